package hcl

import (
	"crypto/sha256"
	"runtime"
	"slices"
	"sync"
)

// decodeFiles decodes every file, those the cache does not hold in
// parallel, largest first so that no big file starts last and runs alone.
// Each file is parsed whole by hclsyntax: cutting large files into chunks
// parsed apart saved under 5% of the load's CPU (BENCHMARKS.md, "Hand-written
// code against the library"), too little for a parser of our own.
func decodeFiles(srcs []Source) []decodedFile {
	out := make([]decodedFile, len(srcs))
	keys := make([]fileKey, len(srcs))
	var todo []int
	for i, s := range srcs {
		keys[i] = fileKey{name: s.Name, sum: sha256.Sum256(s.Bytes)}
		var hit bool
		if out[i], hit = cache.get(keys[i]); !hit {
			todo = append(todo, i)
		}
	}
	slices.SortStableFunc(todo, func(a, b int) int { return len(srcs[b].Bytes) - len(srcs[a].Bytes) })
	parallel(len(todo), func(k int) { out[todo[k]] = decodeFile(srcs[todo[k]]) })
	for _, i := range todo {
		cache.put(keys[i], out[i], len(srcs[i].Bytes))
	}
	cache.endLoad()
	return out
}

// parallel runs f(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// The decode cache: a reload of unchanged files (the usual SIGHUP after one
// file was edited, or a reload that changed nothing) skips parsing and
// decoding them. A decoded file depends on nothing but its name and bytes,
// and nothing changes a loaded block afterwards, so configs may share
// them. Entries not used by the last cacheLoads loads are dropped, and the
// cache holds at most cacheBytes of source.
const (
	cacheLoads = 4
	cacheBytes = 256 << 20
)

type fileKey struct {
	name string
	sum  [sha256.Size]byte
}

type cacheEntry struct {
	f    decodedFile
	size int
	used uint64 // load generation
}

type fileCache struct {
	mu    sync.Mutex
	gen   uint64
	bytes int
	m     map[fileKey]*cacheEntry
}

var cache = &fileCache{m: map[fileKey]*cacheEntry{}}

func (c *fileCache) get(k fileKey) (decodedFile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	if e == nil {
		return decodedFile{}, false
	}
	e.used = c.gen
	return e.f, true
}

func (c *fileCache) put(k fileKey, f decodedFile, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > cacheBytes {
		return
	}
	if old := c.m[k]; old != nil {
		c.bytes -= old.size
	}
	c.m[k] = &cacheEntry{f: f, size: size, used: c.gen}
	c.bytes += size
}

// endLoad ages the entries: those unused for cacheLoads loads go, and the
// least recently used go while the cache is over its size.
func (c *fileCache) endLoad() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if c.gen-e.used >= cacheLoads {
			c.bytes -= e.size
			delete(c.m, k)
		}
	}
	for c.bytes > cacheBytes {
		var oldest fileKey
		var found *cacheEntry
		for k, e := range c.m {
			if found == nil || e.used < found.used {
				oldest, found = k, e
			}
		}
		c.bytes -= found.size
		delete(c.m, oldest)
	}
	c.gen++
}

// resetCache empties the decode cache (benchmarks of the cold load).
func resetCache() {
	cache.mu.Lock()
	defer cache.mu.Unlock()
	cache.m = map[fileKey]*cacheEntry{}
	cache.bytes = 0
}
