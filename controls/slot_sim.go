package controls

import (
	"sync"
	"time"
)

// NewSlot returns a slot held outside Redis: release is called once, by
// the first Release. A simulated store (package simulate) hands these out.
func NewSlot(waited time.Duration, release func()) *Slot {
	var once sync.Once
	return &Slot{Waited: waited, release: func() {
		once.Do(func() {
			if release != nil {
				release()
			}
		})
	}}
}
