package medic

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/medicops/medic"

// layers are medic's packages from the bottom up, relative to the module
// ("." is this package). A package may import its own layer and the layers
// below, never one above. Every package of the module must be listed, and
// every listed package must exist, so that a new package is placed on
// purpose. Keep the README's architecture section and docs/design.md §2 in
// step with this list.
var layers = []struct {
	name string
	pkgs []string
}{
	{"helpers", []string{
		"internal/procsig", "internal/testport", "internal/execx", "internal/redisx",
		"internal/redistest", "internal/keys", "heartbeat", "probe", "alert", "queue/devicetest",
		"runbooks/library", "deploy/examples/demo",
	}},
	{"domain", []string{"hcl", "route", "controls", "queue"}},
	{"engine", []string{"runbooks"}},
	{"jobs", []string{"jobs"}},
	{"node", []string{"exporter"}},
	{"bridge", []string{"bridge"}},
	{"simulation", []string{"simulate"}},
	{"composition", []string{"app"}},
	{"commands", []string{
		"cmd/medic", "e2e", "e2e/harness", "internal/testagent", "internal/testguard", ".",
	}},
}

// goList returns each package of the module and the module packages its
// non-test files import, as `go list` reports them (build constraints
// applied as for this platform).
func goList(t *testing.T) map[string][]string {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		if goCmd, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to list the packages with: %v", err)
		}
	}
	cmd := exec.Command(goCmd, "list", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	graph := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		pkg, imports, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			t.Fatalf("go list: unexpected line %q", line)
		}
		p, _ := rel(pkg)
		graph[p] = nil
		for imp := range strings.FieldsSeq(imports) {
			if r, ok := rel(imp); ok {
				graph[p] = append(graph[p], r)
			}
		}
	}
	return graph
}

func TestNoPackageImportsUpward(t *testing.T) {
	layerOf := map[string]int{}
	for i, l := range layers {
		for _, p := range l.pkgs {
			if j, dup := layerOf[p]; dup {
				t.Errorf("%s is listed twice, in layers %q and %q", p, layers[j].name, l.name)
			}
			layerOf[p] = i
		}
	}
	graph := goList(t)
	pkgs := slices.Sorted(maps.Keys(graph))
	for _, p := range pkgs {
		if _, ok := layerOf[p]; !ok {
			t.Errorf("package %s is in no layer: add it to the layer it belongs to in layers_test.go (and to the README's architecture section)", p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(layerOf)) {
		if _, ok := graph[p]; !ok {
			t.Errorf("layer %q lists %s, which is no package of the module any more: remove it", layers[layerOf[p]].name, p)
		}
	}
	for _, p := range pkgs {
		from, ok := layerOf[p]
		if !ok {
			continue
		}
		for _, imp := range graph[p] {
			if to, ok := layerOf[imp]; ok && to > from {
				t.Errorf("%s (layer %q) imports %s from a layer above (%q)", p, layers[from].name, imp, layers[to].name)
			}
		}
	}
}

// docTable reads the package table of a markdown file's section (from the
// heading to the next heading of the same or a higher level, code blocks
// skipped): each row whose first cell is a `package` gives its other cells.
func docTable(t *testing.T, file, heading string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	rows := map[string][]string{}
	in, fenced, found := false, false, false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if line == heading {
			in, found = true, true
			continue
		}
		if in && strings.HasPrefix(line, "#") {
			if l := strings.IndexByte(line, ' '); l > 0 && l <= level && strings.Trim(line[:l], "#") == "" {
				in = false
			}
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		pkg := strings.TrimSuffix(strings.Trim(cells[0], "`"), "/")
		if _, dup := rows[pkg]; dup {
			t.Errorf("%s: %s appears twice in the package table", file, pkg)
		}
		rows[pkg] = cells[1:]
	}
	if !found {
		t.Fatalf("%s has no %q section", file, heading)
	}
	return rows
}

// TestReadmeArchitectureMatchesTree: the README's package table lists
// every package, in its layer, with the medic packages it imports, as `go
// list` sees them; docs/design.md §2 lists every package in its layer.
func TestReadmeArchitectureMatchesTree(t *testing.T) {
	graph := goList(t)
	layerOf := map[string]string{}
	for _, l := range layers {
		for _, p := range l.pkgs {
			layerOf[p] = l.name
		}
	}
	importsCell := func(p string) string {
		if len(graph[p]) == 0 {
			return "—"
		}
		imps := slices.Sorted(slices.Values(graph[p]))
		for i := range imps {
			imps[i] = "`" + imps[i] + "`"
		}
		return strings.Join(imps, ", ")
	}
	for _, doc := range []struct {
		file, heading string
		imports       bool
	}{
		{"README.md", "### Packages, layered", true},
		{filepath.Join("docs", "design.md"), "## 2. Components", false},
	} {
		rows := docTable(t, doc.file, doc.heading)
		for _, p := range slices.Sorted(maps.Keys(graph)) {
			cells, ok := rows[p]
			want := []string{layerOf[p]}
			if doc.imports {
				want = append(want, importsCell(p))
			}
			switch {
			case !ok:
				t.Errorf("%s %q: package %s is missing; its row starts | `%s` | %s |", doc.file, doc.heading, p, p, strings.Join(want, " | "))
			case len(cells) < len(want)+1 || !slices.Equal(cells[:len(want)], want):
				t.Errorf("%s %q: the row of %s starts | `%s` | %s |, want | `%s` | %s |", doc.file, doc.heading, p, p, strings.Join(cells[:min(len(cells), len(want))], " | "), p, strings.Join(want, " | "))
			}
		}
		for _, p := range slices.Sorted(maps.Keys(rows)) {
			if _, ok := graph[p]; !ok {
				t.Errorf("%s %q lists %s, which is no package of the module", doc.file, doc.heading, p)
			}
		}
	}
}
