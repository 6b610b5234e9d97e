package exporter

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
)

// The node's snapshot for the bridge's status page, in a real Redis.
func TestStateSnapshotInRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := srv.Client()
	def, _ := testAgent(t, "web")
	ext := &hcl.Agent{Name: "ext", Pidfile: "/nonexistent/ext.pid"}
	n := startNode(t, Options{Config: configOf(def, ext), NodeName: "web-01", Redis: client, StateInterval: 100 * time.Millisecond}, nil)
	n.waitServing(t, "web")
	if err := n.Heartbeat("ext", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var st NodeState
	waitFor(t, 5*time.Second, "a state with web up", func() bool {
		b, err := client.Get(ctx, "medic:node:web-01:state").Bytes()
		if err != nil || json.Unmarshal(b, &st) != nil {
			return false
		}
		return len(st.Agents) == 2 && st.Agents[1].Up && st.Agents[1].ProbeOK != nil && st.Agents[0].HeartbeatRegistered
	})
	if st.Node != "web-01" || st.Agents[0].Name != "ext" || st.Agents[1].Name != "web" {
		t.Fatalf("state %+v", st)
	}
	w := st.Agents[1]
	if !w.Supervised || w.PID == 0 || !*w.ProbeOK || w.Usage.RSS == 0 || w.Usage.Memory <= 0 || w.Usage.Disk <= 0 {
		t.Errorf("web %+v", w)
	}
	// The agent's own thresholds, for the bridge to mark usage against.
	if want := (Thresholds{Memory: def.Thresholds.Memory, CPU: def.Thresholds.CPU, Disk: def.Thresholds.Disk}); w.Thresholds == nil || *w.Thresholds != want {
		t.Errorf("web thresholds %+v, want %+v", w.Thresholds, want)
	}
	if e := st.Agents[0]; e.Up || e.HeartbeatTimeout != 30 || e.Supervised {
		t.Errorf("ext %+v", e)
	}
	if ok, _ := client.SIsMember(ctx, "medic:nodes", "web-01").Result(); !ok {
		t.Error("web-01 not in medic:nodes")
	}
	if ttl := client.TTL(ctx, "medic:node:web-01:state").Val(); ttl <= 0 || ttl > DefaultStateTTL {
		t.Errorf("state TTL %s", ttl)
	}
}

// A reload starts new agents, stops removed ones and updates the rest;
// agents of other nodes are left alone.
func TestApplyConfig(t *testing.T) {
	keep, _ := testAgent(t, "keep")
	gone, _ := testAgent(t, "gone")
	n := startNode(t, Options{Config: configOf(keep, gone)}, nil)
	keepID := n.waitServing(t, "keep")
	goneID := n.waitServing(t, "gone")

	added, _ := testAgent(t, "added")
	keep2 := *keep
	keep2.Heartbeat = &hcl.Heartbeat{Timeout: time.Hour}
	elsewhere, _ := testAgent(t, "elsewhere")
	elsewhere.Node = "node-2"
	if err := n.ApplyConfig(context.Background(), configOf(&keep2, added, elsewhere)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := aliveIdentity(goneID); ok {
		t.Error("removed agent still runs")
	}
	if _, err := n.agent("gone"); err == nil {
		t.Error("removed agent still known")
	}
	if _, err := n.agent("elsewhere"); err == nil {
		t.Error("another node's agent taken")
	}
	n.waitServing(t, "added")
	if id := n.pidOf("keep"); id != keepID {
		t.Errorf("kept agent restarted by the reload: %+v → %+v", keepID, id)
	}
	if a, _ := n.agent("keep"); a.def().Heartbeat == nil {
		t.Error("kept agent did not take its new definition")
	}
	if n.Config().Agent("added") == nil {
		t.Error("Config() is not the new config")
	}
}

// A refused configuration changes nothing; the next good one applies.
func TestApplyConfigRefusedKeepsConfig(t *testing.T) {
	def, _ := testAgent(t, "steady")
	cfg := configOf(def)
	n := startNode(t, Options{Config: cfg}, nil)
	if err := n.ApplyConfig(context.Background(), nil); err == nil {
		t.Fatal("nil config applied")
	}
	if n.Config() != cfg {
		t.Fatal("config swapped after a refused apply")
	}
	if _, err := n.agent("steady"); err != nil {
		t.Fatalf("agent lost by a refused apply: %v", err)
	}
	if err := n.ApplyConfig(context.Background(), configOf(def, &hcl.Agent{Name: "new", Pidfile: "/x"})); err != nil {
		t.Fatal(err)
	}
	if _, err := n.agent("new"); err != nil {
		t.Fatal(err)
	}
}
