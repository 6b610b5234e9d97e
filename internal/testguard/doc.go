// Command testguard runs `go test -json` under a wall-clock guard so that a
// wedged or stopped test fails the suite within minutes instead of holding
// CI until its own limit. `make test` runs it as
//
//	go run ./internal/testguard -deadline 25m -stopped 60s -- -count=1 -timeout 8m ./...
//
// It prints what plain `go test` prints for each package (ok / FAIL lines,
// and the full output of failing tests), then a closing
// "N passed, N failed, N skipped" line. go test runs in a process group of
// its own: when the deadline passes, or a process of that group stays in
// the stopped state (SIGSTOP) longer than -stopped, testguard names the
// packages and tests still running and kills that group, and only that
// group (its pgid is checked to be > 1 and not testguard's own).
package main
