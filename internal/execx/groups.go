package execx

import (
	"slices"
	"sync"
	"sync/atomic"
)

// GroupTracker hears of every process group Run starts (its leader's pid,
// which is the group's id) and of its end, once Run has killed what was
// left in it. A node records the groups of its running scripts with one,
// so that its next incarnation can kill what a SIGKILL of the node left
// behind: Pdeathsig kills a script with its node, but not the processes
// the script started (a backgrounded grandchild), which stay in the
// script's process group.
type GroupTracker interface {
	Started(pgid int)
	Ended(pgid int)
}

type trackerBox struct{ t GroupTracker }

var (
	tracker  atomic.Pointer[trackerBox] // the last of active, read by Run
	trackMu  sync.Mutex
	trackers []*trackerBox // active, in the order set
)

// SetGroupTracker makes t hear of the groups of every later Run in this
// process and returns the function that removes it again. With several
// set (tests, or nodes sharing a process), the one set last and not yet
// removed hears them.
func SetGroupTracker(t GroupTracker) (remove func()) {
	box := &trackerBox{t}
	trackMu.Lock()
	trackers = append(trackers, box)
	tracker.Store(box)
	trackMu.Unlock()
	return func() {
		trackMu.Lock()
		defer trackMu.Unlock()
		trackers = slices.DeleteFunc(trackers, func(b *trackerBox) bool { return b == box })
		if len(trackers) == 0 {
			tracker.Store(nil)
		} else {
			tracker.Store(trackers[len(trackers)-1])
		}
	}
}

func trackStarted(pgid int) GroupTracker {
	b := tracker.Load()
	if b == nil || b.t == nil {
		return nil
	}
	b.t.Started(pgid)
	return b.t
}
