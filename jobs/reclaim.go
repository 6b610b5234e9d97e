package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/medicops/medic/internal/keys"
	"github.com/medicops/medic/runbooks"
)

// The job deadline, enforced by the bridge.
//
// A job nobody consumes (its node died and never came back, or was never
// there when the node check is off) would sit in medic:{node:NAME}:jobs
// for ever, with no record and no page. Every bridge runs reclaim: each
// ReclaimInterval it reads the oldest entries of every node's stream and
// takes each job past its deadline that has not started (its episode's
// state is still q) — or whose node started it and has been silent past
// NodeSilence since — out of the stream, records it expired and escalates
// it. Entries whose episode is already cancelled or done (their node died
// before reading them) are deleted. So a stream holds at most the jobs of
// one deadline's worth of alerts plus those running, and an entry leaves
// it only when it is finished, cancelled, or recorded expired: nothing is
// capped away unconsumed.
//
// Taking a job is one script on the node's slot: state q → d, XACK, XDEL,
// and the job goes to the node's outbox (medic:{node:NAME}:expired, a
// sorted set scored by a lease time) in the same step. The bridge that
// took it then stores the record, escalates, and removes it from the
// outbox. Should that bridge die in between, the lease runs out and
// another bridge (or the same one, restarted) takes the job from the
// outbox and does it again: the record is stored under the job's id, so
// once, and a human may at worst be paged twice, never not at all. With
// several bridges side by side the script lets one of them take a job.

// reclaimScript takes one job of a stream past its deadline.
//
// KEYS: dedup, stream, outbox, last-seen. ARGV: run id, entry id, group,
// job JSON, lease until (Unix ms), min-seen (Unix ms; 0: a started job is
// never taken). Returns 1 when taken (now in the outbox), 3 when taken
// after its silent node had started it, 2 when the entry was only deleted
// (its episode is cancelled or done), 0 when left alone (running on a
// live node).
var reclaimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local st = v and string.sub(v, 1, 2) or ''
local take = (not v) or v == 'q:' .. ARGV[1]
if st == 'r:' and tonumber(ARGV[6]) > 0 then
  local seen = redis.call('GET', KEYS[4])
  take = (not seen) or tonumber(seen) < tonumber(ARGV[6])
end
local drop = take or st == 'c:' or st == 'd:' or (st == 'q:' and v ~= 'q:' .. ARGV[1])
if not drop then return 0 end
pcall(redis.call, 'XACK', KEYS[2], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if not take then return 2 end
if v then redis.call('SET', KEYS[1], 'd:' .. ARGV[1], 'KEEPTTL') end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
if st == 'r:' then return 3 end
return 1
`)

// leaseScript retakes a job of an outbox whose lease has run out.
//
// KEYS: outbox. ARGV: job JSON, now, lease until (Unix ms). Returns 1
// when this caller now holds the job.
var leaseScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// ReclaimInterval is how often reclaim looks at the streams: a tenth of the
// job deadline, between 1s and 30s.
func ReclaimInterval(deadline time.Duration) time.Duration {
	return min(max(deadline/10, time.Second), 30*time.Second)
}

// reclaimPage bounds one read of a stream; reclaimPages the reads of one
// stream in one round.
const (
	reclaimPage  = 100
	reclaimPages = 10
	// rescanEvery is how many rounds pass between two SCANs for streams
	// of nodes neither in medic:nodes nor routed to by this bridge.
	rescanEvery = 360
)

// ReclaimOptions configure a Reclaimer. Client, Lease and Expired are
// required.
type ReclaimOptions struct {
	Client redis.UniversalClient
	Keys   Keys
	// JobDeadline sets the pace (ReclaimInterval); default
	// DefaultJobDeadline.
	JobDeadline time.Duration
	// NodeSilence, when set, lets reclaim take a job its node started and
	// has been silent about for longer; 0: a started job is never taken.
	NodeSilence time.Duration
	// Lease is how long a reclaimer holds a job of runbook it took: the
	// escalation's retries and the saves must fit well within it.
	Lease func(runbook string) time.Duration
	// Expired records and escalates a job taken out of node's stream
	// (entry; "" when retaken from the outbox; started: its silent node
	// had started it), typically in the background, and then calls Done
	// with raw so that the job leaves the outbox. A job not Done is taken
	// again once its lease runs out.
	Expired func(node, raw string, job Job, entry string, started bool)
	Logger  *slog.Logger
	Now     func() time.Time
}

// Reclaimer enforces the job deadline (see above).
type Reclaimer struct {
	o       ReclaimOptions
	routed  sync.Map // nodes this process queued jobs for (string → struct{})
	mu      sync.Mutex
	scanned map[string]struct{} // nodes whose streams a SCAN found
}

// NewReclaimer returns a reclaimer; Run starts it.
func NewReclaimer(o ReclaimOptions) *Reclaimer {
	if o.JobDeadline <= 0 {
		o.JobDeadline = DefaultJobDeadline
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reclaimer{o: o}
}

// Routed notes a node a job was queued for: a read, on the hot path, once
// the node is known.
func (r *Reclaimer) Routed(node string) {
	if _, ok := r.routed.Load(node); !ok {
		r.routed.Store(node, struct{}{})
	}
}

// Run enforces the job deadline until ctx ends.
func (r *Reclaimer) Run(ctx context.Context) {
	t := time.NewTicker(ReclaimInterval(r.o.JobDeadline))
	defer t.Stop()
	for round := 0; ; round++ {
		if round%rescanEvery == 0 {
			if nodes, err := r.scanStreams(ctx); err == nil {
				r.mu.Lock()
				r.scanned = nodes
				r.mu.Unlock()
			} else if ctx.Err() == nil {
				r.o.Logger.Warn("reclaim: scan for job streams", "err", err)
			}
		}
		r.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once runs one round over every known node's stream and outbox.
func (r *Reclaimer) Once(ctx context.Context) {
	nodes := map[string]struct{}{}
	if names, err := r.o.Client.SMembers(ctx, keys.Nodes(r.o.Keys.Root())).Result(); err == nil {
		for _, n := range names {
			nodes[n] = struct{}{}
		}
	} else if ctx.Err() == nil {
		r.o.Logger.Warn("reclaim: read the node list", "err", err)
	}
	r.routed.Range(func(n, _ any) bool {
		nodes[n.(string)] = struct{}{}
		return true
	})
	r.mu.Lock()
	for n := range r.scanned {
		nodes[n] = struct{}{}
	}
	r.mu.Unlock()
	for _, n := range r.due(ctx, nodes) {
		if ctx.Err() != nil {
			return
		}
		if err := r.reclaimNode(ctx, n); err != nil && ctx.Err() == nil {
			r.o.Logger.Warn("reclaim: node's job stream", "node", n, "err", err)
		}
	}
}

// duePage is how many nodes one pipelined look in due covers.
const duePage = 500

// due picks the nodes that have work for reclaimNode: an outbox entry
// whose lease ran out, or a stream whose oldest job is past its deadline.
// It looks with one pipeline per duePage nodes, so a fleet of thousands
// of nodes with nothing to reclaim costs a few round trips per interval,
// not two per node. A node it cannot look at is listed, for reclaimNode
// to try and report.
func (r *Reclaimer) due(ctx context.Context, nodes map[string]struct{}) []string {
	k := r.o.Keys
	now := r.o.Now()
	max := strconv.FormatInt(now.UnixMilli(), 10)
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	var out []string
	for len(names) > 0 && ctx.Err() == nil {
		page := names[:min(duePage, len(names))]
		names = names[len(page):]
		outbox := make([]*redis.StringSliceCmd, len(page))
		oldest := make([]*redis.XMessageSliceCmd, len(page))
		_, _ = r.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range page {
				outbox[i] = p.ZRangeByScore(ctx, k.Outbox(n), &redis.ZRangeBy{Min: "-inf", Max: max, Count: 1})
				oldest[i] = p.XRangeN(ctx, k.Jobs(n), "-", "+", 1)
			}
			return nil
		})
		for i, n := range page {
			left, err1 := outbox[i].Result()
			msgs, err2 := oldest[i].Result()
			if err1 != nil || err2 != nil || len(left) > 0 || (len(msgs) > 0 && pastDeadline(msgs[0], now)) {
				out = append(out, n)
			}
		}
	}
	return out
}

// pastDeadline says whether the job of a stream entry is past its
// deadline (an entry that is not a readable job counts as due: reclaimNode
// decides).
func pastDeadline(m redis.XMessage, now time.Time) bool {
	raw, _ := m.Values["job"].(string)
	var job Job
	if err := json.Unmarshal([]byte(raw), &job); err != nil || job.ID == "" {
		return true
	}
	return !job.Deadline.IsZero() && !now.Before(job.Deadline)
}

// scanStreams finds the job streams in Redis (every primary on Cluster).
func (r *Reclaimer) scanStreams(ctx context.Context) (map[string]struct{}, error) {
	pre := keys.NodeStreamPrefix(r.o.Keys.Root())
	found := map[string]struct{}{}
	var mu sync.Mutex
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.ScanType(ctx, 0, keys.JobsPattern(r.o.Keys.Root()), 1000, "stream").Iterator()
		for it.Next(ctx) {
			k := it.Val()
			if len(k) > len(pre)+len(keys.JobsSuffix) {
				mu.Lock()
				found[k[len(pre):len(k)-len(keys.JobsSuffix)]] = struct{}{}
				mu.Unlock()
			}
		}
		return it.Err()
	}
	var err error
	if cl, ok := r.o.Client.(*redis.ClusterClient); ok {
		err = cl.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.o.Client)
	}
	return found, err
}

func (r *Reclaimer) leaseUntil(now time.Time, runbook string) int64 {
	return now.Add(r.o.Lease(runbook)).UnixMilli()
}

func (r *Reclaimer) reclaimNode(ctx context.Context, node string) error {
	k := r.o.Keys
	now := r.o.Now()
	// First what a reclaimer took and did not finish.
	left, err := r.o.Client.ZRangeByScore(ctx, k.Outbox(node), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: reclaimPage,
	}).Result()
	if err != nil {
		return err
	}
	for _, raw := range left {
		var job Job
		_ = json.Unmarshal([]byte(raw), &job)
		lease := r.leaseUntil(now, job.Runbook)
		ok, err := leaseScript.Run(ctx, r.o.Client, []string{k.Outbox(node)}, raw, now.UnixMilli(), lease).Int()
		if err != nil {
			return err
		}
		if ok == 1 {
			r.expire(node, raw, "", false)
		}
	}
	var minSeen int64
	if r.o.NodeSilence > 0 {
		minSeen = now.Add(-r.o.NodeSilence).UnixMilli()
	}
	start := "-"
	for range reclaimPages {
		msgs, err := r.o.Client.XRangeN(ctx, k.Jobs(node), start, "+", reclaimPage).Result()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			raw, _ := m.Values["job"].(string)
			var job Job
			if err := json.Unmarshal([]byte(raw), &job); err != nil || job.ID == "" {
				continue // the consumer records what it cannot read
			}
			if job.Deadline.IsZero() || now.Before(job.Deadline) {
				// Jobs are queued in order, with one deadline: the rest
				// are younger still.
				return nil
			}
			ks := []string{k.Dedup(job.Node, job.Alert.Fingerprint, job.Alert.StartsAt), k.Jobs(node), k.Outbox(node), k.Seen(node)}
			lease := r.leaseUntil(now, job.Runbook)
			got, err := reclaimScript.Run(ctx, r.o.Client, ks, job.ID, m.ID, DefaultGroup, raw, lease, minSeen).Int()
			if err != nil {
				return err
			}
			if got == 1 || got == 3 {
				r.expire(node, raw, m.ID, got == 3)
			}
		}
		if len(msgs) < reclaimPage {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	return nil
}

func (r *Reclaimer) expire(node, raw, entry string, started bool) {
	var job Job
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		return
	}
	r.o.Expired(node, raw, job, entry, started)
}

// Done takes a job Expired was given (raw, as given) out of node's outbox.
func (r *Reclaimer) Done(ctx context.Context, node, raw string) error {
	return r.o.Client.ZRem(ctx, r.o.Keys.Outbox(node), raw).Err()
}

// ExpiredRecord is the run record of a job taken past its deadline out of
// node's stream (started: its silent node had started it), at now.
func ExpiredRecord(job Job, node string, started bool, now time.Time) *runbooks.RunRecord {
	a := job.Alert
	reason := fmt.Sprintf("the job waited in node %s's stream past its deadline (queued %s, deadline %s) and no node took it; reclaimed by the bridge",
		node, job.Enqueued.UTC().Format(time.RFC3339), job.Deadline.UTC().Format(time.RFC3339))
	if started {
		reason = fmt.Sprintf("node %s started the job and has been silent since, past its deadline (%s); reclaimed by the bridge",
			node, job.Deadline.UTC().Format(time.RFC3339))
	}
	rec := &runbooks.RunRecord{
		ID: job.ID, Runbook: job.Runbook, Agent: job.Agent, Node: job.Node, Trigger: runbooks.TriggerAlert,
		Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Labels: a.Labels, Steps: []runbooks.Step{},
		Outcome: runbooks.OutcomeExpired, Reason: reason, Started: job.Enqueued, Finished: now,
	}
	rec.Duration = rec.Finished.Sub(rec.Started).Seconds()
	return rec
}
