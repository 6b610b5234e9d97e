package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// pusher is the agent's default HTTP/1.1 client for plain-http device URLs
// without a proxy: one keep-alive connection per device worker at a time,
// the request written with one write and the answer read on the calling
// goroutine. Profiling the agent showed net/http's client spending more
// CPU than the rest of the agent (a write loop and a read loop goroutine
// per connection, two hand-offs per request); on a shared 2-core machine
// that CPU is what limits end-to-end throughput. The request on the wire
// is the one net/http sends (same headers, Content-Length framing), and
// like net/http it retries once on a fresh connection when a reused one
// fails before any byte of the answer — safe because every push carries
// an Idempotency-Key. Any other URL (https, a proxy) goes through
// http.Client.
type pusher struct {
	timeout time.Duration
	dialer  *net.Dialer
	proxy   func(*http.Request) (*url.URL, error)

	mu      sync.Mutex
	idle    map[string][]*pushConn // host:port → idle connections
	targets map[string]*pushTarget // device URL → parsed
}

type pushTarget struct {
	direct bool   // plain http, no proxy: this client; else http.Client
	addr   string // host:port to dial
	host   string // Host header
	uri    string // request URI
}

type pushConn struct {
	c  net.Conn
	br *bufio.Reader
	wb []byte
}

// maxIdlePerHost bounds the idle connections kept per device host.
const maxIdlePerHost = 64

func newPusher(timeout time.Duration) *pusher {
	return &pusher{
		timeout: timeout,
		dialer:  &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		proxy:   http.ProxyFromEnvironment,
		idle:    map[string][]*pushConn{},
		targets: map[string]*pushTarget{},
	}
}

// target parses a device URL once.
func (p *pusher) target(rawURL string) (*pushTarget, error) {
	p.mu.Lock()
	t := p.targets[rawURL]
	p.mu.Unlock()
	if t != nil {
		return t, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	t = &pushTarget{host: u.Host, uri: u.RequestURI()}
	if u.Scheme == "http" && u.Host != "" && u.User == nil && validHeaderValue(u.Host) && validHeaderValue(t.uri) {
		proxy, err := p.proxy(&http.Request{Method: http.MethodPost, URL: u, Header: http.Header{}})
		if err == nil && proxy == nil {
			t.direct = true
			t.addr = u.Host
			if u.Port() == "" {
				t.addr = net.JoinHostPort(u.Hostname(), "80")
			}
		}
	}
	p.mu.Lock()
	if len(p.targets) >= 100000 { // a bound for estates of many devices
		clear(p.targets)
	}
	p.targets[rawURL] = t
	p.mu.Unlock()
	return t, nil
}

func (p *pusher) get(addr string) *pushConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[addr]
	if len(l) == 0 {
		return nil
	}
	c := l[len(l)-1]
	l[len(l)-1] = nil
	p.idle[addr] = l[:len(l)-1]
	return c
}

func (p *pusher) put(addr string, c *pushConn) {
	p.mu.Lock()
	if len(p.idle[addr]) < maxIdlePerHost {
		p.idle[addr] = append(p.idle[addr], c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.c.Close()
	}
}

// closeIdle closes every idle connection.
func (p *pusher) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*pushConn{}
	p.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.c.Close()
		}
	}
}

// pushHeader is one header of a push, in the order they are written.
type pushHeader struct{ name, value string }

// do POSTs body to t with the headers and returns the status code. The
// answer's body is read (up to 64 KiB) and discarded.
func (p *pusher) do(ctx context.Context, t *pushTarget, body []byte, hdr []pushHeader) (int, error) {
	for _, h := range hdr {
		if !validHeaderValue(h.value) {
			return 0, fmt.Errorf("invalid value for header %s", h.name)
		}
	}
	for attempt := 0; ; attempt++ {
		c := p.get(t.addr)
		reused := c != nil
		if c == nil {
			nc, err := p.dialer.DialContext(ctx, "tcp", t.addr)
			if err != nil {
				return 0, err
			}
			c = &pushConn{c: nc, br: bufio.NewReaderSize(nc, 4096)}
		}
		code, keep, started, err := p.roundTrip(ctx, c, t, body, hdr)
		if err == nil {
			if keep {
				p.put(t.addr, c)
			} else {
				c.c.Close()
			}
			return code, nil
		}
		c.c.Close()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		// A kept-alive connection the device closed meanwhile: try once
		// more on a new one, as net/http does for idempotent requests.
		if reused && !started && attempt == 0 {
			continue
		}
		return 0, err
	}
}

// roundTrip writes the request and reads the answer on c. started reports
// whether any byte of the answer arrived.
func (p *pusher) roundTrip(ctx context.Context, c *pushConn, t *pushTarget, body []byte, hdr []pushHeader) (code int, keep, started bool, err error) {
	// The context ends the push through the AfterFunc below, so that its
	// error, not an i/o timeout, is what the caller sees.
	if err := c.c.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return 0, false, false, err
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	b := c.wb[:0]
	b = append(b, "POST "...)
	b = append(b, t.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	for _, h := range hdr {
		b = append(b, h.name...)
		b = append(b, ": "...)
		b = append(b, h.value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, body...)
	if cap(b) <= 64<<10 {
		c.wb = b
	}
	if _, err := c.c.Write(b); err != nil {
		return 0, false, false, err
	}
	for {
		if _, err := c.br.Peek(1); err != nil {
			return 0, false, false, err
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return 0, false, true, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue // 100 Continue, 103 Early Hints: the answer follows
		}
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return 0, false, true, err
		}
		// Keep the connection only when the whole answer was read.
		var one [1]byte
		n, rerr := resp.Body.Read(one[:])
		keep = n == 0 && errors.Is(rerr, io.EOF) && !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
		resp.Body.Close()
		if keep && c.br.Buffered() > 0 {
			keep = false // bytes after the answer: not a sane peer
		}
		// A cancellation that raced the answer may still move the
		// deadline: such a connection is not reused.
		if keep && stop() {
			// Idle connections wait without a deadline; the next push sets one.
			keep = c.c.SetDeadline(time.Time{}) == nil
		} else {
			keep = false
		}
		return resp.StatusCode, keep, true, nil
	}
}

// validHeaderValue reports whether s can be sent as a header value (or in
// the request line): no control characters but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
