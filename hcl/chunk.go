package hcl

import (
	"bytes"
	"crypto/sha256"
	"runtime"
	"slices"
	"sync"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Parsing dominates the load of a large estate, and one large file would
// be parsed by one core while the other waits. So a large file is cut at
// top-level block boundaries into chunks that are parsed (and decoded) on
// their own, each from its real start position, so every range — and so
// every diagnostic's file:line:col — is the one a parse of the whole file
// gives. The cut is only a guess from a light scan: a chunked result is
// used only when every chunk parses and decodes at the root without a
// single diagnostic. Otherwise the whole file is parsed again in one
// piece and its diagnostics are exactly the usual ones.

// chunkTarget is the size a large file is cut into; files under twice this
// are parsed whole. Small chunks also keep hclsyntax's token slices small,
// which saves copying and collection.
const chunkTarget = 32 << 10

// chunkTargetSize is chunkTarget, changed only by tests.
var chunkTargetSize = chunkTarget

// chunk is a piece of a file that starts at the start of a line.
type chunk struct {
	src   []byte
	start hcl2.Pos
}

// splitChunks cuts src at newlines outside any block, bracket, string,
// comment or heredoc, into pieces of at least target bytes. It returns the
// whole file as one chunk when it finds no safe cut, or when the scan meets
// anything it does not follow (the whole-file parse then reports it).
func splitChunks(src []byte, target int) []chunk {
	whole := []chunk{{src: src, start: hcl2.InitialPos}}
	if len(src) < 2*target {
		return whole
	}
	var cuts []int
	// stack of open contexts: 'b' bracket/brace/paren, 's' quoted
	// template, 'i' interpolation or directive inside a quoted template.
	var stack []byte
	last := 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		top := byte(0)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top == 's' {
			switch {
			case c == '\\':
				i++
			case c == '\n':
				return whole
			case c == '"':
				stack = stack[:len(stack)-1]
			case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == c && i+2 < len(src) && src[i+2] == '{':
				i += 2 // $${ and %%{ are literal
			case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == '{':
				stack = append(stack, 'i')
				i++
			}
			continue
		}
		switch c {
		case '#':
			i = lineEnd(src, i) - 1
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				i = lineEnd(src, i) - 1
			} else if i+1 < len(src) && src[i+1] == '*' {
				j := bytes.Index(src[i+2:], []byte("*/"))
				if j < 0 {
					return whole
				}
				i += 2 + j + 1
			}
		case '"':
			stack = append(stack, 's')
		case '{', '[', '(':
			stack = append(stack, 'b')
		case '}', ']', ')':
			if top != 'b' && !(top == 'i' && c == '}') {
				return whole
			}
			stack = stack[:len(stack)-1]
		case '<':
			if i+1 < len(src) && src[i+1] == '<' {
				end, ok := heredocEnd(src, i+2)
				if !ok {
					return whole
				}
				i = end - 1
			}
		case '\n':
			if len(stack) == 0 && i+1-last >= target && len(src)-(i+1) >= target {
				cuts = append(cuts, i+1)
				last = i + 1
			}
		}
	}
	if len(cuts) == 0 || len(stack) > 0 {
		return whole
	}
	out := make([]chunk, 0, len(cuts)+1)
	pos, from := hcl2.InitialPos, 0
	for _, cut := range append(cuts, len(src)) {
		out = append(out, chunk{src: src[from:cut], start: pos})
		pos.Line += bytes.Count(src[from:cut], []byte{'\n'})
		pos.Byte = cut
		from = cut
	}
	return out
}

// lineEnd is the index of the newline ending the line holding i, or len(src).
func lineEnd(src []byte, i int) int {
	if j := bytes.IndexByte(src[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(src)
}

// heredocEnd scans a heredoc whose "<<" ends before i: an optional "-", a
// marker, the end of the line, then lines up to one that is the marker
// alone (leading spaces allowed). It returns the index just past that
// line's marker.
func heredocEnd(src []byte, i int) (int, bool) {
	if i < len(src) && src[i] == '-' {
		i++
	}
	j := i
	for j < len(src) && (src[j] == '_' || src[j] == '-' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
		j++
	}
	marker := src[i:j]
	if len(marker) == 0 || j >= len(src) || src[j] != '\n' {
		return 0, false
	}
	for line := j + 1; line < len(src); {
		end := lineEnd(src, line)
		if bytes.Equal(bytes.TrimLeft(bytes.TrimRight(src[line:end], "\r"), " \t"), marker) {
			return end, true
		}
		line = end + 1
	}
	return 0, false
}

// decodeChunk parses and decodes one chunk; ok is false when the chunk
// produced any diagnostic at the file level (then the file is parsed whole).
func decodeChunk(name string, c chunk) (decodedFile, bool) {
	file, diags := hclsyntax.ParseConfig(c.src, name, c.start)
	if len(diags) > 0 || file == nil || file.Body == nil {
		return decodedFile{}, false
	}
	body, isSyntax := file.Body.(*hclsyntax.Body)
	if !isSyntax || len(body.Attributes) > 0 {
		return decodedFile{}, false
	}
	content, diags := file.Body.Content(rootSchema)
	if len(diags) > 0 {
		return decodedFile{}, false
	}
	return decodedFile{blocks: decodeBlocks(content.Blocks)}, true
}

// decodeFiles parses and decodes the files — large ones in chunks — on
// every core; results keep the order of srcs. Files seen in an earlier load
// with the same name and content come from the cache without parsing.
func decodeFiles(srcs []Source) []decodedFile {
	out := make([]decodedFile, len(srcs))
	keys := make([]fileKey, len(srcs))
	hit := make([]bool, len(srcs))
	type unit struct {
		file int
		c    chunk
	}
	var units []unit
	chunks := make([][]decodedFile, len(srcs))
	oks := make([][]bool, len(srcs))
	for i, s := range srcs {
		keys[i] = fileKey{name: s.Name, sum: sha256.Sum256(s.Bytes)}
		if out[i], hit[i] = cache.get(keys[i]); hit[i] {
			continue
		}
		cs := splitChunks(s.Bytes, chunkTargetSize)
		chunks[i] = make([]decodedFile, len(cs))
		oks[i] = make([]bool, len(cs))
		for _, c := range cs {
			units = append(units, unit{file: i, c: c})
		}
	}
	// Largest first, so that no big piece starts last and runs alone.
	order := make([]int, len(units))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(units[b].c.src) - len(units[a].c.src) })
	index := make([]int, len(units)) // unit → its place among its file's chunks
	seen := make([]int, len(srcs))
	for u := range units {
		index[u] = seen[units[u].file]
		seen[units[u].file]++
	}
	parallel(len(order), func(k int) {
		u := units[order[k]]
		if len(chunks[u.file]) == 1 {
			chunks[u.file][0], oks[u.file][0] = decodeFile(srcs[u.file]), true
			return
		}
		chunks[u.file][index[order[k]]], oks[u.file][index[order[k]]] = decodeChunk(srcs[u.file].Name, u.c)
	})
	var redo []int
	for i := range srcs {
		if chunks[i] == nil {
			continue
		}
		if slices.Contains(oks[i], false) {
			redo = append(redo, i)
			continue
		}
		if len(chunks[i]) == 1 {
			out[i] = chunks[i][0]
		} else {
			for _, c := range chunks[i] {
				out[i].blocks = append(out[i].blocks, c.blocks...)
			}
		}
	}
	parallel(len(redo), func(k int) { out[redo[k]] = decodeFile(srcs[redo[k]]) })
	for i := range srcs {
		if !hit[i] {
			cache.put(keys[i], out[i], len(srcs[i].Bytes))
		}
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
