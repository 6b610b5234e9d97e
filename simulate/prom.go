package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// HistoryQuery is the firing history a backtest replays.
const HistoryQuery = `ALERTS{alertstate="firing"}`

// HistoryStep is the resolution of the history: one point a minute.
const HistoryStep = time.Minute

// maxPoints is how many points per series one query_range asks for;
// Prometheus refuses more than 11,000.
const maxPoints = 10000

// maxPromResponse bounds one query_range answer.
const maxPromResponse = 256 << 20

// Prometheus reads the alert history through the HTTP API.
type Prometheus struct {
	URL    string
	Client *http.Client // nil: a client with a 2-minute timeout
}

// Series is one label set and the times it was present.
type Series struct {
	Labels map[string]string
	Times  []time.Time
}

// PromError is an answer of Prometheus other than success.
type PromError struct {
	Status    int
	ErrorType string
	Message   string
}

func (e *PromError) Error() string {
	what := "refused the query"
	if e.Status >= 500 {
		what = "failed"
	}
	msg := e.Message
	if e.ErrorType != "" {
		msg = e.ErrorType + ": " + msg
	}
	return fmt.Sprintf("Prometheus %s (%d %s): %s", what, e.Status, http.StatusText(e.Status), msg)
}

// tooMany reports an answer that a shorter range would avoid.
func (e *PromError) tooMany() bool {
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "exceeded maximum resolution") || strings.Contains(m, "too many samples") ||
		strings.Contains(m, "too many points") || strings.Contains(m, "would load too many")
}

// History returns ALERTS{alertstate="firing"} between from and to, a
// point every step, in ranges of at most maxPoints points; a range
// Prometheus finds too large is split in two until it answers.
func (p *Prometheus) History(ctx context.Context, from, to time.Time, step time.Duration) ([]Series, error) {
	if p.Client == nil {
		p.Client = &http.Client{Timeout: 2 * time.Minute}
	}
	merged := map[string]*Series{}
	for start := from; !start.After(to); {
		end := start.Add(step * (maxPoints - 1))
		if end.After(to) {
			end = to
		}
		if err := p.rangeSplit(ctx, start, end, step, merged, 0); err != nil {
			return nil, err
		}
		start = end.Add(step)
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Series, 0, len(keys))
	for _, k := range keys {
		s := merged[k]
		sort.Slice(s.Times, func(i, j int) bool { return s.Times[i].Before(s.Times[j]) })
		out = append(out, *s)
	}
	return out, nil
}

func (p *Prometheus) rangeSplit(ctx context.Context, from, to time.Time, step time.Duration, into map[string]*Series, depth int) error {
	series, err := p.queryRange(ctx, from, to, step)
	var pe *PromError
	if errors.As(err, &pe) && pe.tooMany() {
		n := int(to.Sub(from) / step)
		if n < 2 || depth >= 16 {
			return fmt.Errorf("%w (even %s of history at a time is too much)", err, to.Sub(from))
		}
		mid := from.Add(step * time.Duration(n/2))
		if err := p.rangeSplit(ctx, from, mid, step, into, depth+1); err != nil {
			return err
		}
		return p.rangeSplit(ctx, mid.Add(step), to, step, into, depth+1)
	}
	if err != nil {
		return err
	}
	for _, s := range series {
		k := labelKey(s.Labels)
		if m := into[k]; m != nil {
			m.Times = append(m.Times, s.Times...)
		} else {
			cp := s
			into[k] = &cp
		}
	}
	return nil
}

func (p *Prometheus) queryRange(ctx context.Context, from, to time.Time, step time.Duration) ([]Series, error) {
	q := url.Values{}
	q.Set("query", HistoryQuery)
	q.Set("start", strconv.FormatInt(from.Unix(), 10))
	q.Set("end", strconv.FormatInt(to.Unix(), 10))
	q.Set("step", strconv.FormatFloat(step.Seconds(), 'f', -1, 64))
	target := strings.TrimSuffix(p.URL, "/") + "/api/v1/query_range"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(q.Encode()))
	if err != nil {
		return nil, fmt.Errorf("--prometheus.url %q: %w", p.URL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "medic backtest")
	resp, err := p.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("Prometheus at %s is unreachable: %w", p.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPromResponse+1))
	if err != nil {
		return nil, fmt.Errorf("Prometheus at %s: reading the answer: %w", p.URL, err)
	}
	if len(body) > maxPromResponse {
		return nil, &PromError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("too many points: the answer is over %d MiB", maxPromResponse>>20)}
	}
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		if resp.StatusCode != http.StatusOK {
			return nil, &PromError{Status: resp.StatusCode, Message: strings.TrimSpace(firstLine(string(body)))}
		}
		return nil, fmt.Errorf("Prometheus at %s answered something that is not the query API's JSON (is it Prometheus?): %v", p.URL, err)
	}
	if resp.StatusCode != http.StatusOK || r.Status != "success" {
		return nil, &PromError{Status: resp.StatusCode, ErrorType: r.ErrorType, Message: r.Error}
	}
	if r.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("Prometheus answered a %q, want a matrix", r.Data.ResultType)
	}
	out := make([]Series, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		lbls := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			if k != "__name__" && k != "alertstate" {
				lbls[k] = v
			}
		}
		ser := Series{Labels: lbls}
		for _, v := range s.Values {
			ts, ok := v[0].(float64)
			if !ok {
				continue
			}
			ser.Times = append(ser.Times, time.UnixMilli(int64(ts*1000)).UTC())
		}
		out = append(out, ser)
	}
	return out, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	if len(s) > 200 {
		return s[:200]
	}
	return s
}

func labelKey(l map[string]string) string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
		b.WriteString(l[n])
		b.WriteByte(0)
	}
	return b.String()
}

// Episode is one label set's continuous firing interval.
type Episode struct {
	Labels     map[string]string
	Start, End time.Time
}

// Episodes cuts each series into continuous intervals: a gap of more
// than one step between points starts a new episode. They come sorted by
// start.
func Episodes(series []Series, step time.Duration) []Episode {
	var out []Episode
	for _, s := range series {
		for i := 0; i < len(s.Times); {
			j := i
			for j+1 < len(s.Times) && s.Times[j+1].Sub(s.Times[j]) <= step {
				j++
			}
			out = append(out, Episode{Labels: s.Labels, Start: s.Times[i], End: s.Times[j]})
			i = j + 1
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return labelKey(out[i].Labels) < labelKey(out[j].Labels)
	})
	return out
}
