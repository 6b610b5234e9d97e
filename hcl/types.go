package hcl

import (
	"regexp"
	"sync"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/zclconf/go-cty/cty"

	"github.com/medicops/medic/probe"
)

// Default thresholds of docs/design.md §1.1.
const (
	DefaultMemoryThreshold = 0.80
	DefaultCPUThreshold    = 0.80
	DefaultDiskThreshold   = 0.99

	DefaultProbeTimeout     = 2 * time.Second
	DefaultProbeInterval    = 10 * time.Second
	DefaultCauseTimeout     = 30 * time.Second
	DefaultVerifyAttempts   = 3
	DefaultVerifyInterval   = 2 * time.Second
	DefaultBudgetRestarts   = 3
	DefaultBudgetWindow     = time.Hour
	DefaultEscalateTimeout  = 10 * time.Second
	DefaultEscalateRetryFor = 5 * time.Minute
	DefaultCheckInterval    = 2 * time.Second
	DefaultMaxAttempts      = 10
	DefaultHeartbeatTimeout = 15 * time.Second

	DefaultApprovalTTL      = 15 * time.Minute
	DefaultConcurrencyWait  = 5 * time.Minute
	DefaultConcurrencyQueue = 100
	DefaultSilenceDuration  = 10 * time.Minute
	DefaultSilenceTimeout   = 5 * time.Second
)

// Modes of a runbook.
const (
	ModeAuto    = "auto"    // diagnose and act
	ModeShadow  = "shadow"  // diagnose, record what would run, act on nothing
	ModeApprove = "approve" // diagnose, then wait for an operator's decision before acting
)

// Config is everything loaded from one file or directory of *.hcl files, in
// load order (files sorted by name, blocks in source order). It is
// read-only: the loader's decode cache shares its blocks with later loads
// of the same files, so a caller that wants a variant copies the block.
type Config struct {
	Agents   []*Agent
	Runbooks []*Runbook
	Pools    []*Pool

	// Sources maps each loaded file name to its bytes so that diagnostics can
	// print source snippets.
	Sources map[string][]byte

	// Indexes built by the loader; nil for a hand-built Config, which is
	// then searched linearly.
	agentIndex map[string]*Agent
	poolIndex  map[string]*Pool
	matchIdx   *matchIndex

	// keyCounts memoises, per runbook with a concurrency max_ratio, how
	// many agents have each value of its key (map[string]int): a Config
	// does not change once loaded, and counting evaluates the key for
	// every agent.
	keyCounts sync.Map
}

// Agent is one `agent "NAME"` block.
type Agent struct {
	Name string
	// Node restricts the agent to one node; empty means every node that
	// loads the file.
	Node string

	// Command is set for agents medic node supervises itself.
	Command []string
	// Pidfile, Start and Stop are set for externally supervised agents.
	Pidfile string
	Start   []string
	Stop    []string

	Workdir string
	Env     map[string]string

	Heartbeat  *Heartbeat // nil: not guarded by heartbeats
	Probe      *Probe     // nil: no functional probe (liveness only)
	Thresholds Thresholds

	// Watchdog lets medic node start the agent's runbook itself when a
	// supervised child exits or a heartbeat goes overdue. Defaults to true
	// for command agents and false for pidfile agents.
	Watchdog bool

	// Labels describe the agent for fleet-wide limits: a runbook's
	// concurrency max_ratio counts the agents whose key evaluates to the
	// alert's key value, with alert.labels = Labels + agent + node.
	Labels map[string]string

	DeclRange hcl2.Range

	// value is what expressions see as `agent`, built on first use for a
	// loaded agent (most agents of a large estate never need it); loaded
	// agents are never changed, so it stays right.
	value *lazyValue
}

type lazyValue struct {
	once sync.Once
	v    cty.Value
}

// Supervised reports whether medic node starts the agent as its own child.
func (a *Agent) Supervised() bool { return len(a.Command) > 0 }

// Heartbeat is the `heartbeat {}` block of an agent.
type Heartbeat struct {
	Timeout time.Duration
}

// Probe is the `probe "KIND" {}` block of an agent; its kinds are package
// probe's registry (hcl/probe.go decodes it).
type Probe = probe.Config

// Thresholds are the usage ratios above which a cause is suspected.
type Thresholds struct {
	Memory float64
	CPU    float64
	Disk   float64
}

// Runbook is one `runbook "NAME"` block.
type Runbook struct {
	Name string
	// Match holds label equality conditions (all must hold).
	Match map[string]string
	// Matchers holds Alertmanager-syntax matchers (all must hold).
	Matchers labels.Matchers
	// AgentExpr selects the target agent; nil means alert.labels.agent.
	AgentExpr hcl2.Expression

	Causes   []*Cause
	Verify   Verify
	Escalate *Escalate // nil: no escalation target (outcome is still "escalated")
	Budget   Budget
	// Switchover, when set, makes the runbook switch a pool away from the
	// target agent instead of running the recovery lifecycle.
	Switchover *Switchover

	// Mode is ModeAuto (default), ModeShadow or ModeApprove.
	Mode string
	// ApprovalTTL bounds the wait for a decision in ModeApprove.
	ApprovalTTL time.Duration
	// Concurrency, when set, caps the runs in progress fleet-wide.
	Concurrency *Concurrency
	// Circuit, when set, stops acting on an agent after too many runs.
	Circuit *Circuit
	// Silence, when set, silences the alert in Alertmanager while a run
	// acts.
	Silence *Silence
	// Redact are patterns replaced by [REDACTED] in step output and
	// escalation bodies before anything is stored or sent.
	Redact []*regexp.Regexp

	DeclRange hcl2.Range

	// conds are the match conditions precompiled by the loader.
	conds    []matchCond
	compiled bool
}

// Cause is one `cause "NAME"` block: a condition and its repair script.
type Cause struct {
	Name      string
	When      hcl2.Expression
	Repair    []string // argv; empty means "no repair, restart only"
	Timeout   time.Duration
	DeclRange hcl2.Range
}

// Verify is the `verify {}` block.
type Verify struct {
	Attempts int
	Interval time.Duration
}

// Escalate is the `escalate {}` block.
type Escalate struct {
	Webhook string
	Command []string
	Timeout time.Duration
	// RetryFor bounds how long a target that fails to deliver is tried
	// again, with backoff (retry_for; default DefaultEscalateRetryFor; 0:
	// one attempt).
	RetryFor time.Duration
}

// Budget is the `budget {}` block: at most Restarts restarts within Window.
type Budget struct {
	Restarts int
	Window   time.Duration
}

// Concurrency is the `concurrency {}` block: at most Max runs of the
// runbook in progress at once for one value of Key, across every node.
type Concurrency struct {
	// Max is the absolute cap; 0 means only MaxRatio caps.
	Max int
	// MaxRatio caps as a share of the agents whose Key evaluates to the
	// same value (at least 1 run); 0 means only Max caps.
	MaxRatio float64
	// Key evaluates against the alert; nil means one limit for the whole
	// runbook.
	Key hcl2.Expression
	// Wait bounds how long an excess run waits for a slot; Queue bounds
	// how many wait at once.
	Wait  time.Duration
	Queue int
}

// Circuit is the `circuit {}` block: past MaxRuns runs for one agent
// within Window, runs escalate at once without acting.
type Circuit struct {
	MaxRuns int
	Window  time.Duration
}

// Silence is the `silence {}` block: an Alertmanager silence of the alert
// for Duration while the run acts.
type Silence struct {
	// Alertmanager is the base URL, e.g. http://127.0.0.1:9093.
	Alertmanager string
	Duration     time.Duration
	Timeout      time.Duration
}

// Switchover is the `switchover {}` block of a runbook.
type Switchover struct {
	// Pool evaluates to the pool name; nil means alert.labels.pool.
	Pool hcl2.Expression
}

// Pool is one `pool "NAME"` block.
type Pool struct {
	Name          string
	Agents        []string
	CheckInterval time.Duration
	// MaxAttempts is how many answers of a 4xx other than 408, 409, 425
	// and 429 to one config block its device (default 10).
	MaxAttempts int
	// DeviceURL is a template over `device`; use DeviceURLFor.
	DeviceURL hcl2.Expression
	DeclRange hcl2.Range

	agentsExpr   hcl2.Expression // for positions of agent references
	deviceInHost bool            // device_url puts the device in the host: see CheckDevice
}

// Usage holds the ratios sampled at diagnosis time, seen as `usage`.
type Usage struct {
	Memory     float64 `json:"memory"`
	CPU        float64 `json:"cpu"`
	Disk       float64 `json:"disk"`
	HostMemory float64 `json:"host_memory"`
	HostCPU    float64 `json:"host_cpu"`
}
