package queue

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status is a pool's state as GET /api/v1/pools/{pool} shows it.
type Status struct {
	Pool   string `json:"pool"`
	Agent  string `json:"agent"`
	Stream string `json:"stream,omitempty"`
	// Status is active, switching, waiting (configs buffered, no agent yet)
	// or "" for a pool nothing has been published to.
	Status string `json:"status"`
	Host   string `json:"host,omitempty"`
	Lock   bool   `json:"lock"`
	Epoch  int64  `json:"epoch"`
	// Backlog counts configs not yet acknowledged in agent streams (the
	// active one, and during a switchover the old and new ones).
	Backlog int64 `json:"backlog"`
	// Buffer counts configs waiting in the buffer stream.
	Buffer      int64         `json:"buffer"`
	Phase       string        `json:"phase,omitempty"`
	Target      string        `json:"target,omitempty"`
	From        string        `json:"from,omitempty"`
	Previous    string        `json:"previous,omitempty"`
	Reason      string        `json:"reason,omitempty"`
	Switchovers int64         `json:"switchovers"`
	Agents      []AgentStatus `json:"agents"`
}

// AgentStatus is one registered agent of a pool.
type AgentStatus struct {
	ID      string  `json:"id"`
	Host    string  `json:"host,omitempty"`
	Healthy bool    `json:"healthy"`
	Age     float64 `json:"heartbeat_age_seconds"`
	Timeout float64 `json:"heartbeat_timeout_seconds"`
}

// registration is one parsed registry value "LAST_MS TIMEOUT_MS HOST".
type registration struct {
	lastMs, timeoutMs int64
	host              string
}

func parseRegistration(v string) (registration, bool) {
	parts := strings.SplitN(v, " ", 3)
	if len(parts) < 2 {
		return registration{}, false
	}
	last, err1 := strconv.ParseInt(parts[0], 10, 64)
	to, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return registration{}, false
	}
	r := registration{lastMs: last, timeoutMs: to}
	if len(parts) == 3 {
		r.host = parts[2]
	}
	return r, true
}

func (r registration) healthy(nowMs int64) bool { return nowMs-r.lastMs <= r.timeoutMs }

// serverNowMs reads the Redis server clock, the clock heartbeats are
// stamped with.
func serverNowMs(ctx context.Context, c redis.UniversalClient, key string) (int64, error) {
	// In a cluster TIME goes to a random node; heartbeats are stamped by the
	// node owning the pool's slot, so ask that node (a script on the key's
	// slot) to avoid comparing clocks of two servers.
	v, err := timeScript.Run(ctx, c, []string{key}).Int64()
	if err != nil {
		return 0, err
	}
	return v, nil
}

var timeScript = redis.NewScript(luaLib + `return now_ms()`)

// ReadStatus reads a pool's status.
func ReadStatus(ctx context.Context, c redis.UniversalClient, k Keys) (Status, error) {
	st := Status{Pool: k.Pool(), Agents: []AgentStatus{}}
	ctl, err := c.HGetAll(ctx, k.Ctl()).Result()
	if err != nil {
		return st, fmt.Errorf("read pool %s: %w", k.Pool(), err)
	}
	st.Agent = ctl["agent"]
	st.Stream = ctl["stream"]
	st.Status = ctl["status"]
	st.Host = ctl["host"]
	st.Lock = ctl["lock"] == "1"
	st.Epoch, _ = strconv.ParseInt(ctl["epoch"], 10, 64)
	st.Phase = ctl["phase"]
	st.Target = ctl["target"]
	st.From = ctl["from"]
	st.Previous = ctl["previous"]
	st.Reason = ctl["reason"]
	st.Switchovers, _ = strconv.ParseInt(ctl["switchovers"], 10, 64)
	streams := map[string]bool{}
	for _, s := range []string{ctl["stream"], ctl["from_stream"], ctl["target_stream"]} {
		if s != "" {
			streams[s] = true
		}
	}
	for s := range streams {
		n, err := c.XLen(ctx, s).Result()
		if err != nil {
			return st, fmt.Errorf("read pool %s: %w", k.Pool(), err)
		}
		st.Backlog += n
	}
	if st.Buffer, err = c.XLen(ctx, k.Buf()).Result(); err != nil {
		return st, fmt.Errorf("read pool %s: %w", k.Pool(), err)
	}
	regs, err := c.HGetAll(ctx, k.Agents()).Result()
	if err != nil {
		return st, fmt.Errorf("read pool %s agents: %w", k.Pool(), err)
	}
	now, err := serverNowMs(ctx, c, k.Ctl())
	if err != nil {
		return st, fmt.Errorf("read server time: %w", err)
	}
	for id, v := range regs {
		r, ok := parseRegistration(v)
		if !ok {
			continue
		}
		st.Agents = append(st.Agents, AgentStatus{
			ID: id, Host: r.host, Healthy: r.healthy(now),
			Age:     time.Duration((now - r.lastMs) * int64(time.Millisecond)).Seconds(),
			Timeout: time.Duration(r.timeoutMs * int64(time.Millisecond)).Seconds(),
		})
	}
	sort.Slice(st.Agents, func(i, j int) bool { return st.Agents[i].ID < st.Agents[j].ID })
	return st, nil
}
