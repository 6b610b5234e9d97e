package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/medicops/medic/e2e/harness"
	"github.com/medicops/medic/internal/redistest"
	"github.com/medicops/medic/internal/testport"
)

func deployFile(t testing.TB, parts ...string) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root, "deploy"}, parts...)...)
}

// The examples in deploy/ are checked by the tools their users run.
func TestDeployExamplesValid(t *testing.T) {
	tests := []struct {
		tool string
		args []string
	}{
		{"amtool", []string{"check-config", deployFile(t, "alertmanager", "alertmanager.yml")}},
		// Also loads and checks medic-rules.yml, which it names.
		{"promtool", []string{"check", "config", deployFile(t, "prometheus", "prometheus.yml")}},
	}
	for _, tc := range tests {
		t.Run(tc.tool, func(t *testing.T) {
			out, err := exec.Command(harness.LookPath(t, tc.tool), tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", tc.tool, tc.args, err, out)
			}
			if !strings.Contains(string(out), "SUCCESS") {
				t.Errorf("%s said:\n%s", tc.tool, out)
			}
		})
	}
}

// The web-config example works as written once its certificate exists:
// TLS on, requests without the documented example password refused.
func TestWebConfigExample(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	b, err := os.ReadFile(deployFile(t, "web-config", "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("/etc/medic/tls/medic.crt", cert, "/etc/medic/tls/medic.key", key).Replace(string(b))
	if cfg == string(b) {
		t.Fatal("the example no longer names /etc/medic/tls/medic.{crt,key}; update this test")
	}
	path := filepath.Join(dir, "web-config.yml")
	os.WriteFile(path, []byte(cfg), 0o600)
	if err := web.Validate(path); err != nil {
		t.Fatalf("web.Validate: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &path}, slog.New(slog.DiscardHandler))
	defer srv.Close()

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := "https://" + ln.Addr().String() + "/metrics"
	for _, tc := range []struct {
		user, pass string
		code       int
	}{
		{"", "", http.StatusUnauthorized},
		{"prometheus", "wrong", http.StatusUnauthorized},
		{"prometheus", "change-me", http.StatusOK},
		{"alertmanager", "change-me", http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || resp.TLS == nil {
			t.Errorf("user %q: %d (tls %v), want %d over TLS", tc.user, resp.StatusCode, resp.TLS != nil, tc.code)
		}
	}
	// Plain HTTP is not served.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + ln.Addr().String() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200")
		}
	}
}

func selfSigned(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medic"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "medic.crt"), filepath.Join(dir, "medic.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

var execStart = regexp.MustCompile(`(?m)^ExecStart=((?:.*\\\n)*.*)$`)

// Every flag the systemd units pass is one the built medic accepts.
func TestSystemdUnitsFlags(t *testing.T) {
	for _, unit := range []string{"medic-bridge.service", "medic-node.service"} {
		t.Run(unit, func(t *testing.T) {
			b, err := os.ReadFile(deployFile(t, "systemd", unit))
			if err != nil {
				t.Fatal(err)
			}
			m := execStart.FindStringSubmatch(string(b))
			if m == nil {
				t.Fatal("no ExecStart")
			}
			argv := strings.Fields(strings.ReplaceAll(m[1], "\\\n", " "))
			if len(argv) < 3 || filepath.Base(argv[0]) != "medic" {
				t.Fatalf("ExecStart %v", argv)
			}
			help, _ := exec.Command(bins.Medic, argv[1], "--help").CombinedOutput()
			if !strings.Contains(string(help), "medic "+argv[1]) {
				t.Fatalf("medic %s --help:\n%s", argv[1], help)
			}
			for _, a := range argv[2:] {
				name, _, _ := strings.Cut(a, "=")
				if !strings.HasPrefix(name, "--") {
					t.Errorf("unexpected argument %q", a)
					continue
				}
				if !strings.Contains(string(help), name+"=") && !strings.Contains(string(help), name+" ") {
					t.Errorf("medic %s does not know %s", argv[1], name)
				}
			}
			for _, want := range []string{"[Unit]", "[Service]", "[Install]", "WantedBy=multi-user.target"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("unit lacks %s", want)
				}
			}
		})
	}
}

// `medic bridge --web.config.file` with the example (TLS + basic auth) and
// no token file: the password authenticates every endpoint, Alertmanager's
// webhook included (http_config.basic_auth). A bearer token cannot be
// added on top: Alertmanager sends one Authorization header.
func TestBridgeWithWebConfigExample(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	b, err := os.ReadFile(deployFile(t, "web-config", "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web-config.yml")
	os.WriteFile(webCfg, []byte(strings.NewReplacer("/etc/medic/tls/medic.crt", cert, "/etc/medic/tls/medic.key", key).Replace(string(b))), 0o600)
	conf := filepath.Join(dir, "conf")
	os.Mkdir(conf, 0o755)
	os.WriteFile(filepath.Join(conf, "empty.hcl"), []byte("# nothing\n"), 0o644)
	rdb := redistest.Start(t, redistest.Options{})
	addr := testport.Addr(t)
	proc := harness.StartProc(t, "bridge-tls", []string{bins.Medic, "bridge",
		"--config.file=" + conf, "--redis.url=" + rdb.URL(), "--web.listen-address=" + addr,
		"--web.config.file=" + webCfg,
	}, harness.ProcOptions{})

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	do := func(method, path, user string) int {
		req, _ := http.NewRequest(method, "https://"+addr+path, strings.NewReader(`{"version":"4","status":"firing","receiver":"medic","groupKey":"{}:{}","alerts":[]}`))
		if user != "" {
			req.SetBasicAuth(user, "change-me")
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "bridge ready over TLS", func() (bool, string) {
		if exited, err := proc.Exited(); exited {
			t.Fatalf("bridge exited: %v\n%s", err, proc.Tail(4<<10))
		}
		code := do("GET", "/-/ready", "prometheus")
		return code == 200, fmt.Sprint(code)
	})
	for _, tc := range []struct {
		method, path, user string
		want               int
	}{
		{"GET", "/-/healthy", "", http.StatusUnauthorized},
		{"GET", "/metrics", "prometheus", http.StatusOK},
		{"GET", "/", "prometheus", http.StatusOK},
		{"POST", "/api/v1/webhook", "", http.StatusUnauthorized},
		{"POST", "/api/v1/webhook", "alertmanager", http.StatusAccepted},
	} {
		if got := do(tc.method, tc.path, tc.user); got != tc.want {
			t.Errorf("%s %s user=%q: %d, want %d", tc.method, tc.path, tc.user, got, tc.want)
		}
	}
}
