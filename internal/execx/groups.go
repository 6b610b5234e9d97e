package execx

import "sync/atomic"

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

var tracker atomic.Pointer[trackerBox]

// SetGroupTracker makes t hear of the groups of every later Run in this
// process (nil: none) and returns a function that puts back the tracker
// it replaced.
func SetGroupTracker(t GroupTracker) (restore func()) {
	var box *trackerBox
	if t != nil {
		box = &trackerBox{t}
	}
	old := tracker.Swap(box)
	return func() { tracker.CompareAndSwap(box, old) }
}

func trackStarted(pgid int) GroupTracker {
	b := tracker.Load()
	if b == nil {
		return nil
	}
	b.t.Started(pgid)
	return b.t
}
