package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

func init() {
	register("pause", "Pause remediation on a running bridge: of one runbook, or of every runbook; for a while, or until resumed.", setupPause)
	register("resume", "Lift a pause set with medic pause (without --runbook: the global pause).", setupResume)
	register("approve", "Approve a run waiting in approve mode (its id: the status page, or GET /api/v1/runs?outcome=pending_approval).", func(cmd *kingpin.CmdClause) action {
		return setupDecide(cmd, true)
	})
	register("reject", "Reject a run waiting in approve mode: it ends as rejected and nothing acts.", func(cmd *kingpin.CmdClause) action {
		return setupDecide(cmd, false)
	})
}

// The operator's commands (pause, resume, approve, reject) talk to a
// running bridge over its HTTP API, as curl would, so they need nothing
// but its URL and credentials.

// bridgeClient talks to a bridge's HTTP API for the operator commands.
type bridgeClient struct {
	URL       string // --bridge.url; user:password@ in it is sent as basic auth
	TokenFile string
	CAFile    string
	Timeout   time.Duration
}

func bridgeClientFlags(cmd *kingpin.CmdClause) *bridgeClient {
	c := &bridgeClient{}
	cmd.Flag("bridge.url", "The bridge's base URL (https://user:password@host:9095 sends basic auth).").Default("http://127.0.0.1:9095").StringVar(&c.URL)
	cmd.Flag("bridge.token-file", "File holding the bridge's bearer token (the bridge's --bridge.token-file).").StringVar(&c.TokenFile)
	cmd.Flag("bridge.ca-file", "CA certificate(s) to verify an https bridge with, instead of the system's.").StringVar(&c.CAFile)
	cmd.Flag("timeout", "Give up after this long.").Default("10s").DurationVar(&c.Timeout)
	return c
}

// do sends one request with JSON body in (nil: none) and returns the
// status and the decoded JSON answer. A transport failure, or an answer
// that is not the bridge's, is an error; a status is for the caller.
func (c *bridgeClient) do(ctx context.Context, method, path string, in any) (int, map[string]any, error) {
	base, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return 0, nil, fmt.Errorf("--bridge.url %q: want http://HOST:PORT or https://HOST:PORT", c.URL)
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	target := *base
	target.User = nil
	req, err := http.NewRequestWithContext(ctx, method, target.String()+path, body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.TokenFile != "" {
		data, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return 0, nil, fmt.Errorf("--bridge.token-file: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return 0, nil, fmt.Errorf("--bridge.token-file %s is empty", c.TokenFile)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if u := base.User; u != nil {
		pw, _ := u.Password()
		req.SetBasicAuth(u.Username(), pw)
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return 0, nil, fmt.Errorf("--bridge.ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return 0, nil, fmt.Errorf("--bridge.ca-file %s: no PEM certificate in it", c.CAFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the bridge at %s: %w (is medic bridge running there? set --bridge.url)", base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: %s, not an answer of medic bridge: %.200s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return resp.StatusCode, out, nil
}

// refusal turns a non-2xx answer into the error the operator reads.
func (c *bridgeClient) refusal(code int, out map[string]any) error {
	msg, _ := out["error"].(string)
	switch code {
	case http.StatusUnauthorized:
		if c.TokenFile == "" {
			return fmt.Errorf("the bridge wants credentials (401): set --bridge.token-file to its token file, or put user:password in --bridge.url: %s", msg)
		}
		return fmt.Errorf("the bridge refused the token in %s (401): %s", c.TokenFile, msg)
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if msg == "" {
			return fmt.Errorf("the bridge has no such endpoint (%d): is it older than this medic?", code)
		}
	}
	return fmt.Errorf("the bridge refused (%d): %s", code, msg)
}

// defaultBy is who the bridge records when the request is not
// authenticated as a user: the login name running the command.
func defaultBy() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

func setupPause(cmd *kingpin.CmdClause) action {
	c := bridgeClientFlags(cmd)
	var runbook, dur, reason, by string
	cmd.Flag("runbook", "The runbook to pause; default: every runbook.").StringVar(&runbook)
	cmd.Flag("for", "How long (90m, 1h30m, 2d); default: until medic resume.").StringVar(&dur)
	cmd.Flag("reason", "Why, for whoever looks at the status page or the API.").StringVar(&reason)
	cmd.Flag("by", "Who pauses, recorded unless the bridge authenticates you as a user.").Default(defaultBy()).StringVar(&by)
	return func(ctx context.Context, _ *slog.Logger) error {
		return runPause(ctx, c, runbook, dur, reason, by, os.Stdout)
	}
}

func runPause(ctx context.Context, c *bridgeClient, runbook, dur, reason, by string, stdout io.Writer) error {
	code, out, err := c.do(ctx, http.MethodPost, "/api/v1/pause", map[string]string{"runbook": runbook, "for": dur, "reason": reason, "by": by})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return c.refusal(code, out)
	}
	fmt.Fprintf(stdout, "paused %s, %s (by %s)", pauseWhat(out["runbook"]), pauseUntil(out["until"]), str(out["by"]))
	if r := str(out["reason"]); r != "" {
		fmt.Fprintf(stdout, ": %s", r)
	}
	fmt.Fprintln(stdout)
	if runbook == "" {
		fmt.Fprintln(stdout, "lift it with: medic resume")
	} else {
		fmt.Fprintf(stdout, "lift it with: medic resume --runbook=%s\n", runbook)
	}
	return nil
}

func setupResume(cmd *kingpin.CmdClause) action {
	c := bridgeClientFlags(cmd)
	var runbook, by string
	cmd.Flag("runbook", "The runbook whose pause to lift; default: the global pause (per-runbook pauses stay).").StringVar(&runbook)
	cmd.Flag("by", "Who resumes, for the bridge's log.").Default(defaultBy()).StringVar(&by)
	return func(ctx context.Context, _ *slog.Logger) error {
		return runResume(ctx, c, runbook, by, os.Stdout)
	}
}

func runResume(ctx context.Context, c *bridgeClient, runbook, by string, stdout io.Writer) error {
	code, out, err := c.do(ctx, http.MethodDelete, "/api/v1/pause?runbook="+url.QueryEscape(runbook), map[string]string{"by": by})
	if err != nil {
		return err
	}
	left, _ := out["pauses"].([]any)
	if code == http.StatusNotFound && out["pauses"] != nil {
		// The pause API answered: nothing was lifted.
		err = fmt.Errorf("%s was not paused; nothing was resumed", pauseWhat(runbook))
	} else if code != http.StatusOK {
		return c.refusal(code, out)
	} else {
		fmt.Fprintf(stdout, "resumed %s\n", pauseWhat(runbook))
	}
	if len(left) == 0 {
		fmt.Fprintln(stdout, "nothing is paused now")
	}
	for _, p := range left {
		m, _ := p.(map[string]any)
		fmt.Fprintf(stdout, "still paused: %s, %s (since %s by %s)", pauseWhat(m["runbook"]), pauseUntil(m["until"]), timeText(str(m["since"])), str(m["by"]))
		if r := str(m["reason"]); r != "" {
			fmt.Fprintf(stdout, ": %s", r)
		}
		fmt.Fprintln(stdout)
	}
	return err
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func pauseWhat(runbook any) string {
	s := str(runbook)
	if s == "" || s == "*" {
		return "every runbook"
	}
	return fmt.Sprintf("runbook %q", s)
}

func pauseUntil(until any) string {
	s := str(until)
	if s == "" {
		return "until resumed"
	}
	return "until " + timeText(s)
}

// timeText shortens an RFC 3339 time of the API to seconds, in UTC.
func timeText(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339)
}

func setupDecide(cmd *kingpin.CmdClause, approve bool) action {
	c := bridgeClientFlags(cmd)
	var id, reason, by string
	cmd.Arg("RUN", "The run's id.").Required().StringVar(&id)
	cmd.Flag("reason", "Why, recorded with the decision.").StringVar(&reason)
	cmd.Flag("by", "Who decides, recorded unless the bridge authenticates you as a user.").Default(defaultBy()).StringVar(&by)
	return func(ctx context.Context, _ *slog.Logger) error {
		return runDecide(ctx, c, approve, id, reason, by, os.Stdout)
	}
}

func runDecide(ctx context.Context, c *bridgeClient, approve bool, id, reason, by string, stdout io.Writer) error {
	verb, done := "reject", "rejected"
	if approve {
		verb, done = "approve", "approved"
	}
	code, out, err := c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/"+verb, map[string]string{"reason": reason, "by": by})
	if err != nil {
		return err
	}
	switch code {
	case http.StatusOK:
		fmt.Fprintf(stdout, "%s run %s (by %s)\n", done, id, str(out["by"]))
		return nil
	case http.StatusNotFound, http.StatusConflict:
		if msg := str(out["error"]); msg != "" {
			return errors.New(msg)
		}
	}
	return c.refusal(code, out)
}
