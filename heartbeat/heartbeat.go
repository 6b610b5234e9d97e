package heartbeat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultInterval is the beat period when neither Interval nor Timeout is
// set (the node then uses the agent's heartbeat block; its default timeout
// is 15s).
const DefaultInterval = 5 * time.Second

// Client talks to one medic node on behalf of one agent.
type Client struct {
	// NodeURL is the node's base URL, e.g. http://127.0.0.1:9105.
	NodeURL string
	// Agent is the agent's name in the node's configuration.
	Agent string
	// Timeout is sent with every beat; 0 leaves it to the agent's
	// heartbeat block in the node's HCL.
	Timeout time.Duration
	// Interval is Run's beat period; 0 means Timeout/3 (or DefaultInterval).
	Interval time.Duration
	// Healthy, when set, is asked before every beat of Run: a process that
	// is up but not really serving must not beat.
	Healthy func(ctx context.Context) bool
	// OnError, when set, hears about failed beats in Run (which keeps
	// going).
	OnError func(error)
	// HTTPClient defaults to a client with a 5s timeout.
	HTTPClient *http.Client
}

// New returns a client for agent at the node's base URL.
func New(nodeURL, agent string, timeout time.Duration) *Client {
	return &Client{NodeURL: nodeURL, Agent: agent, Timeout: timeout}
}

// APIError is a non-2xx answer of the node.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("medic node: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (c *Client) url() string {
	return strings.TrimRight(c.NodeURL, "/") + "/api/v1/heartbeats/" + url.PathEscape(c.Agent)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return defaultHTTPClient
}

var defaultHTTPClient = &http.Client{Timeout: 5 * time.Second}

func (c *Client) do(ctx context.Context, method string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, c.url(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &APIError{StatusCode: resp.StatusCode, Message: msg}
}

func (c *Client) beatBody() []byte {
	if c.Timeout <= 0 {
		return []byte("{}")
	}
	b, _ := json.Marshal(map[string]string{"timeout": c.Timeout.String()})
	return b
}

// Register registers the agent (or beats it when registered already).
func (c *Client) Register(ctx context.Context) error { return c.do(ctx, http.MethodPut, c.beatBody()) }

// Beat says the agent is serving now.
func (c *Client) Beat(ctx context.Context) error { return c.do(ctx, http.MethodPut, c.beatBody()) }

// Unregister ends the guard, for a clean exit.
func (c *Client) Unregister(ctx context.Context) error { return c.do(ctx, http.MethodDelete, nil) }

// interval is Run's beat period.
func (c *Client) interval() time.Duration {
	switch {
	case c.Interval > 0:
		return c.Interval
	case c.Timeout > 0:
		return c.Timeout / 3
	default:
		return DefaultInterval
	}
}

// Run registers, beats every interval while Healthy (when set) says so,
// and unregisters when ctx ends. Failed beats are retried at the next tick
// (and reported to OnError); a 404 (the node does not know the agent) ends
// Run with that error. Run returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	t := time.NewTicker(c.interval())
	defer t.Stop()
	for {
		if c.Healthy == nil || c.Healthy(ctx) {
			err := c.Beat(ctx)
			if apiErr, ok := err.(*APIError); ok && apiErr.StatusCode == http.StatusNotFound {
				return err
			}
			if err != nil && ctx.Err() == nil && c.OnError != nil {
				c.OnError(err)
			}
		}
		select {
		case <-ctx.Done():
			// A clean exit is not a hang: tell the node, with a context of
			// its own since ctx has ended.
			uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.Unregister(uctx); err != nil && c.OnError != nil {
				c.OnError(err)
			}
			return nil
		case <-t.C:
		}
	}
}
