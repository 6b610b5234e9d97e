package hcl

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// chunkInputs are every HCL input of the repository plus a generated
// estate and shapes the cut must not be fooled by.
func chunkInputs(t *testing.T) []Source {
	var srcs []Source
	for _, pattern := range []string{"testdata/good/*.hcl", "testdata/bad/*.hcl", "testdata/bad/*/*.hcl", "testdata/plan/*.hcl", "../runbooks/library/*.hcl", "../deploy/examples/*.hcl", "../deploy/examples/demo/*.hcl"} {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, Source{Name: p, Bytes: b})
		}
	}
	if len(srcs) < 40 {
		t.Fatalf("only %d inputs", len(srcs))
	}
	srcs = append(srcs, estateSources(120, 30)...)
	tricky := []string{
		"agent \"a\" {\n  command = [\"x\"]\n  env = { A = <<EOF\n}\nagent \"b\" {\nEOF\n  }\n}\nagent \"c\" {\n  command = [\"y\"]\n}\n",
		"agent \"a\" {\n  command = [\"x\"]\n}\n/* }\nagent \"b\" {\n*/\nagent \"c\" {\n  command = [\"y\"]\n}\n",
		"agent \"a\" {\n  command = [\"${\"}\"}\"]\n}\nagent \"c\" {\n  command = [\"y\"]\n}\n",
		"agent \"a\" {\n  command = [\"x\"]\n}\nx = 1\nagent \"c\" {\n  command = [\"y\"]\n}\n",
		"agent \"a\" {\n  command = [\"x\"\n}\nagent \"c\" {\n  command = [\"y\"]\n}\n",
		"agent \"a\" {\n  command = [\"x\"]\n}\n\nagent \"a\" {\n  command = [\"y\"]\n}\nbogus \"c\" {\n}\n",
		"# }\nagent \"a\" {\n  command = [\"$${x}\", \"%%{y}\"]  // }\n}\nagent \"c\" {\n  command = [\"é\"]\n}\n",
	}
	for i, s := range tricky {
		srcs = append(srcs, Source{Name: fmt.Sprintf("tricky-%d.hcl", i), Bytes: []byte(s)})
	}
	return srcs
}

// TestChunkedDecodeIsWholeDecode: cut at every top-level line the scanner
// allows, a file decodes to exactly what the whole-file parse gives (every
// block, expression and range), or the loader is told to parse it whole.
func TestChunkedDecodeIsWholeDecode(t *testing.T) {
	cutAny := 0
	for _, src := range chunkInputs(t) {
		whole := decodeFile(src)
		cs := splitChunks(src.Bytes, 1)
		if len(cs) == 1 {
			continue
		}
		cutAny++
		var got decodedFile
		ok := true
		for _, c := range cs {
			f, cok := decodeChunk(src.Name, c)
			ok = ok && cok
			got.blocks = append(got.blocks, f.blocks...)
		}
		var joined []byte
		for _, c := range cs {
			joined = append(joined, c.src...)
		}
		if string(joined) != string(src.Bytes) {
			t.Fatalf("%s: chunks do not add up to the file", src.Name)
		}
		if !ok {
			if len(whole.diags) == 0 {
				// A fallback is always correct, but a clean file must
				// not need one or the fast path is never taken.
				t.Errorf("%s: chunked decode refused a file without diagnostics", src.Name)
			}
			continue
		}
		if len(whole.diags) > 0 {
			t.Errorf("%s: chunked decode accepted a file with diagnostics: %v", src.Name, whole.diags)
			continue
		}
		if !reflect.DeepEqual(got.blocks, whole.blocks) {
			for i := range min(len(got.blocks), len(whole.blocks)) {
				if !reflect.DeepEqual(got.blocks[i], whole.blocks[i]) {
					t.Errorf("%s: block %d (%s %q) differs from the whole-file decode", src.Name, i, whole.blocks[i].typ, whole.blocks[i].name)
					break
				}
			}
			if len(got.blocks) != len(whole.blocks) {
				t.Errorf("%s: %d blocks chunked, %d whole", src.Name, len(got.blocks), len(whole.blocks))
			}
		}
	}
	if cutAny < 20 {
		t.Errorf("only %d inputs were cut at all", cutAny)
	}
}

// TestLoadDiagnosticsChunkedAndCached: loading a large file with errors
// (chunked, then re-parsed whole) and then loading it again (from the
// cache) give the diagnostics of a plain whole-file load.
func TestLoadDiagnosticsChunkedAndCached(t *testing.T) {
	good := estateSources(400, 50)
	var b strings.Builder
	for _, s := range good {
		b.Write(s.Bytes)
	}
	big := b.String()
	cut := strings.Index(big[len(big)/2:], "\nagent \"") + len(big)/2
	// Balanced, so the cut is made and the chunk's syntax error sends the
	// file back to a whole parse; and a block error, kept in the chunk.
	broken := big[:cut] + "\nagent \"broken\" {\n  command = [\"x\" \"y\"]\n}\n" + big[cut:]
	invalid := big[:cut] + "\nagent \"invalid\" {\n}\nrunbook \"r\" {\n  agent = \"nope\"\n}\n" + big[cut:]
	for _, src := range []Source{{Name: "big.hcl", Bytes: []byte(big)}, {Name: "broken.hcl", Bytes: []byte(broken)}, {Name: "invalid.hcl", Bytes: []byte(invalid)}} {
		if len(splitChunks(src.Bytes, chunkTarget)) < 2 {
			t.Fatalf("%s: not cut", src.Name)
		}
		resetCache()
		chunkTargetSize = 1 << 40 // parse whole: the reference
		_, want := LoadSources([]Source{src})
		chunkTargetSize = chunkTarget
		resetCache()
		_, first := LoadSources([]Source{src})
		_, again := LoadSources([]Source{src})
		if diagStrings(first) != diagStrings(want) {
			t.Errorf("%s: diagnostics\n%s\nwant\n%s", src.Name, diagStrings(first), diagStrings(want))
		}
		if src.Name != "big.hcl" && !want.HasErrors() {
			t.Errorf("%s loaded without errors", src.Name)
		}
		if diagStrings(first) != diagStrings(again) {
			t.Errorf("%s: cached load diagnostics\n%s\nfirst load\n%s", src.Name, diagStrings(again), diagStrings(first))
		}
	}
}

func diagStrings(diags hcl2.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "%s: %s; %s\n", d.Subject, d.Summary, d.Detail)
	}
	return b.String()
}

// TestCacheSeesEdits: a reload after an edit decodes the edited file again.
func TestCacheSeesEdits(t *testing.T) {
	resetCache()
	a := Source{Name: "a.hcl", Bytes: []byte("agent \"one\" {\n  command = [\"x\"]\n}\n")}
	cfg, diags := LoadSources([]Source{a})
	if diags.HasErrors() || cfg.Agent("one") == nil {
		t.Fatalf("first load: %v", diags)
	}
	a.Bytes = []byte("agent \"two\" {\n  command = [\"x\"]\n}\n")
	cfg, diags = LoadSources([]Source{a})
	if diags.HasErrors() || cfg.Agent("two") == nil || cfg.Agent("one") != nil {
		t.Fatalf("edited load: %v, agents %v", diags, cfg.Agents)
	}
	// Same bytes under another name: positions name the file, so no hit.
	b := Source{Name: "b.hcl", Bytes: a.Bytes}
	cfg, diags = LoadSources([]Source{b})
	if diags.HasErrors() || cfg.Agent("two").DeclRange.Filename != "b.hcl" {
		t.Fatalf("renamed load: %v", diags)
	}
}

// TestLiteralStringMapMatchesEvaluation: the fast path of decodeStringMap
// gives what evaluating and converting the object gives, and declines
// everything it does not handle.
func TestLiteralStringMapMatchesEvaluation(t *testing.T) {
	for _, tc := range []struct {
		src  string
		fast bool
	}{
		{`{ LOG_LEVEL = "info" }`, true},
		{`{ A = "1", "b c" = "2", "" = "" }`, true},
		{`{}`, true},
		{`{ A = 1 }`, false},
		{`{ A = "x", A = "y" }`, false},
		{`{ (x) = "y" }`, false},
		{`{ A = "${upper("x")}" }`, false},
		{`{ a.b = "x" }`, false},
	} {
		f, diags := hclsyntax.ParseConfig([]byte("env = "+tc.src+"\n"), "t.hcl", hcl2.InitialPos)
		if diags.HasErrors() {
			continue // not valid syntax; nothing to compare
		}
		attrs, _ := f.Body.JustAttributes()
		attr := attrs["env"]
		got, ok := literalStringMap(attr.Expr)
		if ok != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.src, ok, tc.fast)
		}
		if !ok {
			continue
		}
		val, diags := staticValue(attr, cty.Map(cty.String))
		if diags.HasErrors() {
			t.Errorf("%s: fast path took what evaluation rejects: %v", tc.src, diags)
			continue
		}
		want := map[string]string{}
		for it := val.ElementIterator(); it.Next(); {
			k, v := it.Element()
			want[k.AsString()] = v.AsString()
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: fast %v, evaluated %v", tc.src, got, want)
		}
	}
}
