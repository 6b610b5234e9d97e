package jobs

import (
	"time"

	"github.com/medicops/medic/alert"
)

// DefaultJobDeadline is how long a queued job may wait for its node before
// it is recorded as expired instead of run late.
const DefaultJobDeadline = 10 * time.Minute

// DefaultDedupTTL is how long an alert episode is remembered.
const DefaultDedupTTL = 24 * time.Hour

// Job is one remediation request on a node's stream (field "job", JSON).
type Job struct {
	// ID is the run id; the run record is stored under it, so a job run
	// again after its node crashed keeps one record.
	ID       string      `json:"id"`
	Runbook  string      `json:"runbook"`
	Agent    string      `json:"agent"`
	Node     string      `json:"node"`
	Alert    alert.Alert `json:"alert"`
	Enqueued time.Time   `json:"enqueued"`
	Deadline time.Time   `json:"deadline"`
}

// DefaultNodeSilence is how long a node may go without a state snapshot
// before `medic bridge` stops routing jobs to it (--bridge.node-silence).
// Sixty missed snapshots (one every 5s) is not a hiccup.
const DefaultNodeSilence = 5 * time.Minute

// MinNodeSilence is the shortest node silence `medic bridge` accepts: three
// snapshot intervals, so that one slow or lost snapshot never makes a live
// node unroutable.
const MinNodeSilence = 15 * time.Second

// EnqueueCall is the enqueue script's call that takes job's episode and
// queues it on its node's stream (see enqueueScript): minSeen is the
// oldest last-seen time (Unix ms) of a node still given jobs, 0 for no
// check.
func EnqueueCall(k Keys, job *Job, data []byte, dedupTTL time.Duration, minSeen int64) Call {
	a := job.Alert
	return Call{
		keys: []string{k.Dedup(job.Node, a.Fingerprint, a.StartsAt), k.Jobs(job.Node), k.Seen(job.Node)},
		args: []any{job.ID, dedupTTL.Milliseconds(), data, minSeen},
	}
}
