package exporter

import (
	"context"
	"encoding/json"
	"time"

	"github.com/medicops/medic/internal/keys"
)

// NodeState is the snapshot of the node that `medic node` writes to Redis
// (internal/keys.NodeState) and serves at GET /api/v1/agents. The bridge's
// fleet view (its GET /api/v1/agents and status page) decodes this very
// type, so writer and reader cannot disagree on a field; change a JSON
// name only with both sides and the README's changelog.
type NodeState struct {
	Node    string       `json:"node"`
	Updated time.Time    `json:"updated"`
	Agents  []AgentState `json:"agents"`
}

// AgentState is one agent in a NodeState.
type AgentState struct {
	Name                string  `json:"name"`
	Supervised          bool    `json:"supervised"`
	Up                  bool    `json:"up"`
	PID                 int     `json:"pid,omitempty"`
	Detail              string  `json:"detail,omitempty"`
	ProbeOK             *bool   `json:"probe_ok,omitempty"`
	ProbeDetail         string  `json:"probe_detail,omitempty"`
	HeartbeatRegistered bool    `json:"heartbeat_registered"`
	HeartbeatAge        float64 `json:"heartbeat_age_seconds,omitempty"`
	HeartbeatTimeout    float64 `json:"heartbeat_timeout_seconds,omitempty"`
	Restarts            uint64  `json:"restarts"`
	Usage               struct {
		Memory float64 `json:"memory"`
		CPU    float64 `json:"cpu"`
		Disk   float64 `json:"disk"`
		RSS    uint64  `json:"rss_bytes"`
	} `json:"usage"`
	// Thresholds are the agent's usage thresholds (its HCL thresholds
	// block, defaults filled in), so that a reader marks a ratio over
	// the agent's own threshold; absent in snapshots of older nodes.
	Thresholds *Thresholds `json:"thresholds,omitempty"`
}

// Thresholds are an agent's usage thresholds, as ratios.
type Thresholds struct {
	Memory float64 `json:"memory"`
	CPU    float64 `json:"cpu"`
	Disk   float64 `json:"disk"`
}

// State builds the node's snapshot from the scrape views.
func (n *Node) State() NodeState {
	st := NodeState{Node: n.opts.NodeName, Updated: n.now().UTC(), Agents: []AgentState{}}
	for _, v := range n.views() {
		as := AgentState{
			Name:                v.Name,
			Up:                  v.Up,
			PID:                 v.PID,
			Detail:              v.Detail,
			HeartbeatRegistered: v.HB.registered,
			Restarts:            v.Restarts,
		}
		if a, err := n.agent(v.Name); err == nil {
			def := a.def()
			as.Supervised = def.Supervised()
			as.Thresholds = &Thresholds{Memory: def.Thresholds.Memory, CPU: def.Thresholds.CPU, Disk: def.Thresholds.Disk}
		}
		if v.Probe.Done {
			ok := v.Probe.OK
			as.ProbeOK, as.ProbeDetail = &ok, v.Probe.Detail
		}
		if v.HB.registered {
			as.HeartbeatAge = v.HBAge.Seconds()
			as.HeartbeatTimeout = v.HB.timeout.Seconds()
		}
		as.Usage.Memory, as.Usage.CPU, as.Usage.Disk, as.Usage.RSS = v.MemRatio, v.CPURatio, v.DiskRatio, v.RSS
		st.Agents = append(st.Agents, as)
	}
	return st
}

// publishState writes the snapshot once.
func (n *Node) publishState(ctx context.Context) error {
	b, err := json.Marshal(n.State())
	if err != nil {
		return err
	}
	p := n.opts.RedisPrefix
	pipe := n.opts.Redis.Pipeline()
	// The last-seen time is in the node's hash slot, next to its job
	// stream, so that the bridge checks that the node is live in the
	// script that queues the node's job (jobs.Keys.Seen).
	pipe.SAdd(ctx, keys.Nodes(p), n.opts.NodeName)
	pipe.Set(ctx, keys.NodeState(p, n.opts.NodeName), b, DefaultStateTTL)
	pipe.Set(ctx, keys.Seen(p, n.opts.NodeName), unixMilli(n), 0)
	_, err = pipe.Exec(ctx)
	return err
}

func (n *Node) stateLoop(ctx context.Context) {
	t := time.NewTicker(n.opts.StateInterval)
	defer t.Stop()
	for {
		if err := n.publishState(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("write node state to Redis", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
