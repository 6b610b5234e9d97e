package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// HTTP probes GET a URL: any 2xx passes, or exactly expect_status, and the
// body must match expect_body when set.
const HTTP = "http"

var httpKind = Kind{
	Attributes: []hcl2.AttributeSchema{{Name: "url", Required: true}, {Name: "expect_status"}, {Name: "expect_body"}},
	Target: func(c *Config) string {
		target := "GET " + c.URL
		if c.ExpectStatus != 0 {
			target += fmt.Sprintf(" expecting %d", c.ExpectStatus)
		}
		if c.ExpectBody != nil {
			target += fmt.Sprintf(" and a body matching %q", c.ExpectBody.String())
		}
		return target
	},
	Prober: HTTPProber{},
}

var _ Prober = HTTPProber{}

// maxHTTPBody bounds how much of an http probe's response is read (and
// matched against expect_body).
const maxHTTPBody = 64 << 10

// httpClient never follows a redirect off the configured URL and keeps no
// idle connections to agents (which come and go).
var httpClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	},
}

// HTTPProber runs http probes with Client; nil means medic's own client,
// which follows no redirect and keeps no idle connection.
type HTTPProber struct{ Client *http.Client }

func (h HTTPProber) Probe(ctx context.Context, c *Config, _ map[string]string) (bool, string) {
	client := h.Client
	if client == nil {
		client = httpClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return false, fmt.Sprintf("http %s: %v", c.URL, err)
	}
	req.Header.Set("User-Agent", "medic-probe")
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Sprintf("http %s: %v", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if err != nil {
		return false, fmt.Sprintf("http %s: reading body: %v", c.URL, err)
	}
	if c.ExpectStatus != 0 {
		if resp.StatusCode != c.ExpectStatus {
			return false, fmt.Sprintf("http %s: status %d, want %d", c.URL, resp.StatusCode, c.ExpectStatus)
		}
	} else if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, fmt.Sprintf("http %s: status %d", c.URL, resp.StatusCode)
	}
	if c.ExpectBody != nil && !c.ExpectBody.Match(body) {
		return false, fmt.Sprintf("http %s: body does not match /%s/", c.URL, c.ExpectBody)
	}
	return true, fmt.Sprintf("http %s: status %d", c.URL, resp.StatusCode)
}
