// Command testagent is the misbehaving agent medic's tests run as a real
// process. It serves HTTP, heartbeats to medic node and to a systemd-style
// NOTIFY_SOCKET, and on command hangs, leaks memory, spins the CPU, fills its
// working directory, ignores SIGTERM or dies.
//
// Build it with
//
//	go build -o DIR/testagent ./internal/testagent
//
// Flags:
//
//	--listen=ADDR              HTTP address (default 127.0.0.1:0)
//	--addr-file=PATH           write the bound address here once listening
//	--pidfile=PATH             write the pid here once listening
//	--name=NAME                agent name (default $MEDIC_AGENT, else "testagent")
//	--heartbeat-url=URL        medic node base URL (http://127.0.0.1:9105); beats
//	                           PUT URL/api/v1/heartbeats/NAME
//	--heartbeat-timeout=D      timeout sent on register (0: rely on the agent's HCL)
//	--heartbeat-interval=D     beat period (default 1s; for NOTIFY_SOCKET the
//	                           default is WATCHDOG_USEC/4 when that is set)
//	--fill-dir=DIR             where /fill writes (default: working directory)
//	--hang-after=D             hang (as POST /hang) after D
//	--die-after=D              exit with --die-code after D
//	--die-code=N               exit code for --die-after (default 1)
//	--ignore-term              ignore SIGTERM (only SIGKILL stops it)
//	--fail-start               exit with code 1 before listening
//	--leak-mb=N                allocate and touch N MiB at start
//	--spin                     burn CPU at start
//	--no-ready                 do not send READY=1
//
// HTTP (any method):
//
//	/healthz                   200 "ok NAME pid PID"; blocks while hung
//	/pid                       the pid
//	/hang                      stop answering /healthz and stop all heartbeats
//	/stop-heartbeat            stop heartbeats (HTTP and NOTIFY_SOCKET) only
//	/leak?mb=N                 allocate and touch N MiB more (kept)
//	/spin?n=G                  burn CPU in G goroutines (default: all cores)
//	/fill?mb=N                 write a file of N MiB into the fill dir
//	/die?code=N                exit with code N (default 1)
//	/ignore-term               ignore SIGTERM from now on
//	/spawn?sleep=S             start `sleep S` as a child in the same process group
//
// On SIGTERM (unless ignored) it sends STOPPING=1, unregisters its HTTP
// heartbeat and exits 0.
package main
