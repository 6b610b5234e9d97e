package probe

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// Config is an agent's `probe "KIND" {}` block, decoded by package hcl
// (where it is hcl.Probe).
type Config struct {
	Kind     string // a registered kind (Names)
	URL      string // http
	Address  string // tcp, host:port
	Command  []string
	Timeout  time.Duration
	Interval time.Duration
	// ExpectStatus is the exact status an http probe wants; 0 means any 2xx.
	ExpectStatus int
	// ExpectBody, when set, must match the http response body.
	ExpectBody *regexp.Regexp
}

// Prober runs one kind of probe. Failure is a result (ok false, detail
// saying why), never an error. ctx ends at the probe's timeout, which
// c.Timeout holds.
type Prober interface {
	Probe(ctx context.Context, c *Config, env map[string]string) (ok bool, detail string)
}

// Kind is one probe kind: its HCL attributes, how `medic plan` describes
// it, and its prober.
type Kind struct {
	// Attributes are the kind's own attributes of the block; every kind
	// also takes CommonAttributes.
	Attributes []hcl2.AttributeSchema
	// Target says what a probe of the kind checks, for `medic plan`:
	// `GET http://…`, `connect host:port`.
	Target func(c *Config) string
	Prober Prober
}

// kinds maps the label of a `probe "KIND" {}` block to its kind: the one
// list of probe kinds.
var kinds = map[string]Kind{
	Exec: execKind,
	HTTP: httpKind,
	TCP:  tcpKind,
}

// CommonAttributes are the attributes every probe block takes.
var CommonAttributes = []hcl2.AttributeSchema{{Name: "timeout"}, {Name: "interval"}}

// Lookup returns the kind registered under name.
func Lookup(name string) (Kind, bool) {
	k, ok := kinds[name]
	return k, ok
}

// Names lists the registered kinds in order.
func Names() []string {
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Schema is the body schema of a `probe "KIND" {}` block of kind k.
func (k Kind) Schema() *hcl2.BodySchema {
	return &hcl2.BodySchema{Attributes: slices.Concat(k.Attributes, CommonAttributes)}
}
