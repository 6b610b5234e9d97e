package controls

import (
	"testing"

	"go.uber.org/goleak"
)

// Slots renew in the background: a released slot must leave no goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
