package bridge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/medicops/medic/hcl"
	"github.com/medicops/medic/internal/redistest"
)

// BenchmarkWebhookHandler is the handler's own cost per single-alert
// webhook (in process, no HTTP transport), Redis round trip included.
func BenchmarkWebhookHandler(b *testing.B) {
	rs := redistest.Start(b, redistest.Options{})
	cfg := loadTestConfig(b, testHCL)
	br := New(Options{Client: rs.Client(), Config: func() *hcl.Config { return cfg }})
	mux := http.NewServeMux()
	br.Register(mux)
	startsAt := time.Now().UTC().Format(time.RFC3339)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"AgentDown","agent":"a1","node":"n1","instance":"i%d"},"startsAt":%q,"fingerprint":"%016x"}]}`, i, startsAt, i+1)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("POST", "/api/v1/webhook", strings.NewReader(body)))
		if w.Code != 202 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
