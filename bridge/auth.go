package bridge

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/medicops/medic/internal/keys"
)

// Authentication of the bridge's own endpoints.
//
// With a bearer token (Options.Token) every endpoint but /metrics,
// /-/healthy and /-/ready needs it: writes, and reads too, because run
// records hold script output and script output can hold secrets. A
// program sends `Authorization: Bearer TOKEN`. A browser cannot be told to
// send a bearer token, so the status page answers an unauthenticated
// visitor with 401 and a login form; POST /login with the token sets a
// session cookie (HttpOnly, SameSite=Strict, 12 h), an HMAC under the
// token of its session epoch, its expiry and the name the visitor gave,
// so every replica that has the token accepts it and rotating the token
// ends every session. The cookie never holds the token. Signing out
// increments the session epoch in Redis (keys.SessionEpoch), which ends
// every session signed in before, on every replica: a copied cookie is
// worthless after its owner signs out. Failed logins are limited for the
// whole bridge, not per client (loginLimiter).
//
// Without a token, authentication is the listener's (--web.config.file:
// basic auth or verified client certificates, in front of every endpoint)
// or there is none, which the app allows on loopback only.
//
// Writes are also refused when a browser says they come from another
// origin (http.CrossOriginProtection: Sec-Fetch-Site, Origin), so that a
// web page cannot make an operator's browser post with its cookie or its
// basic-auth credentials; and a write authenticated by the session cookie
// must carry the session's CSRF token (a hidden form field the status page
// renders), in case a browser sends neither header.

// SessionCookie is the name of the status page's session cookie.
const SessionCookie = "medic_session"

// SessionTTL is how long a login lasts.
const SessionTTL = 12 * time.Hour

// maxFormBody bounds the bodies of the login form and of the operator
// endpoints (pause, approve, reject, reset).
const maxFormBody = 16 << 10

// maxNameLen bounds a name given at login or in a "by" field.
const maxNameLen = 128

// Caller is who made a request, as the bridge's authentication saw it;
// CallerFrom reads it in a handler behind Read, Write or Page.
type Caller struct {
	// Via is how the request was let in: "token" (bearer header),
	// "session" (login cookie), "web" (no token: the web config's basic
	// auth or client certificates, or no authentication at all on
	// loopback).
	Via string
	// User is an authenticated name: the basic-auth user the web config
	// verified (Options.WebUsers), or the common name of a verified client
	// certificate; "" when there is none.
	User string
	// Name is the name given at login: the visitor's own word, not
	// verified.
	Name string
	// CSRF is the token a form posted with this session must carry; ""
	// outside a session.
	CSRF string
}

type callerKey struct{}

// CallerFrom returns the caller stored by Read, Write or Page, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// Who is the name recorded for an operator's action: the authenticated
// user if any, else the name a browser session signed in with, else what
// the request says (by), else "token" for a token holder and "anonymous"
// otherwise. A session's forms carry no "by": the page shows who is
// signed in, and that is who acts.
func (c *Caller) Who(by string) string {
	switch {
	case c != nil && c.User != "":
		return c.User
	case c != nil && c.Via == "session" && c.Name != "":
		return c.Name
	case by != "":
		return by
	case c != nil && c.Name != "":
		return c.Name
	case c != nil && (c.Via == "token" || c.Via == "session"):
		return "token"
	}
	return "anonymous"
}

// authenticate says who r is, or nil when it needs credentials it does
// not carry.
func (b *Bridge) authenticate(r *http.Request) *Caller {
	c := &Caller{Via: "web"}
	if b.opts.WebUsers {
		if u, _, ok := r.BasicAuth(); ok {
			c.User = u
		}
	}
	if c.User == "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c.User = r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	if b.opts.Token == "" {
		return c
	}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if b.authorized(r) {
			c.Via = "token"
			return c
		}
		return nil // a wrong token is wrong, whatever cookie comes with it
	}
	if ck, err := r.Cookie(SessionCookie); err == nil {
		if name, ok := b.validSession(r.Context(), ck.Value); ok {
			c.Via, c.Name, c.CSRF = "session", name, b.mac("csrf", ck.Value)
			return c
		}
	}
	return nil
}

// epochTimeout bounds reading or bumping the session epoch.
const epochTimeout = 2 * time.Second

// sessionEpoch reads the session epoch; 0 before the first sign-out.
func (b *Bridge) sessionEpoch(ctx context.Context) (int64, error) {
	if b.opts.Client == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, epochTimeout)
	defer cancel()
	n, err := b.opts.Client.Get(ctx, keys.SessionEpoch(b.opts.Keys.Root())).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// validSession checks a session cookie's signature, expiry and epoch.
// When the epoch cannot be read the session is refused: a revoked
// cookie must not come back while Redis is away (the bearer token still
// works).
func (b *Bridge) validSession(ctx context.Context, v string) (name string, ok bool) {
	name, epoch, ok := b.checkSession(v, b.opts.Now())
	if !ok {
		return "", false
	}
	cur, err := b.sessionEpoch(ctx)
	if err != nil {
		b.log.Warn("session refused: cannot read the session epoch", "err", err)
		return "", false
	}
	return name, epoch == cur
}

// Read requires authentication for a read endpoint: 401 JSON with a
// WWW-Authenticate challenge when it is missing.
func (b *Bridge) Read(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := b.authenticate(r)
		if c == nil {
			unauthenticated(w)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// Write requires authentication for a mutating endpoint, refuses
// cross-origin browser requests, and, for a session, the session's CSRF
// token (form field "csrf" or header X-CSRF-Token). A form body is parsed
// here, bounded, so that the handler finds it in r.PostForm.
func (b *Bridge) Write(h http.Handler) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := b.authenticate(r)
		if c == nil {
			unauthenticated(w)
			return
		}
		if formPost(r) {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			if err := r.ParseForm(); err != nil {
				writeError(w, http.StatusBadRequest, "form: "+err.Error())
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), formKey{}, true))
		}
		if c.Via == "session" {
			got := r.Header.Get("X-CSRF-Token")
			if got == "" {
				got = r.PostForm.Get("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(c.CSRF)) != 1 {
				writeError(w, http.StatusForbidden, "forbidden: missing or wrong CSRF token (reload the status page)")
				return
			}
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
	return writeCOP.Handler(inner)
}

// writeCOP refuses what a browser marks cross-origin (Sec-Fetch-Site,
// Origin) on every write, with the API's JSON error. One instance serves
// every endpoint: it holds no per-endpoint state.
var writeCOP = func() *http.CrossOriginProtection {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, "forbidden: cross-origin request")
	}))
	return cop
}()

// RequireToken is Write, under its older name.
//
// Deprecated: use Write.
func (b *Bridge) RequireToken(h http.Handler) http.Handler { return b.Write(h) }

// Page requires authentication for a browser page: an unauthenticated
// visitor gets 401 and the login form.
func (b *Bridge) Page(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := b.authenticate(r)
		if c == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="medic"`)
			writeLoginPage(w, http.StatusUnauthorized, "")
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

func unauthenticated(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="medic"`)
	writeError(w, http.StatusUnauthorized, "unauthenticated: a valid bearer token is required")
}

type formKey struct{}

// isForm says whether Write parsed r's body as an HTML form's post (see
// formPost); the answer to one is a redirect back to the status page.
func isForm(r *http.Request) bool {
	v, _ := r.Context().Value(formKey{}).(bool)
	return v
}

// jsonPeek is how many bytes formPost looks at for the start of a JSON
// object.
const jsonPeek = 512

// formPost says whether r is a post of the status page's forms:
// urlencoded, and not JSON. `curl -d '{"by":"you"}'` sends JSON labelled
// application/x-www-form-urlencoded (curl's default for -d), so the
// Content-Type alone is no guide: a body whose first non-blank byte is
// '{' is JSON whatever it says, and a form's body never starts with '{'
// (its first field is the status page's own: csrf, runbook or reason).
// The bytes looked at are put back in front of the body.
func formPost(r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || r.Body == nil || r.Body == http.NoBody {
		return false
	}
	head := make([]byte, jsonPeek)
	n, _ := io.ReadAtLeast(r.Body, head, 1)
	head = head[:n]
	// Read more only while the head is all blank and not yet at the end.
	for n > 0 && len(bytes.TrimLeft(head, " \t\r\n")) == 0 && len(head) < maxFormBody {
		more := make([]byte, jsonPeek)
		n, _ = io.ReadAtLeast(r.Body, more, 1)
		head = append(head, more[:n]...)
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	rest := bytes.TrimLeft(head, " \t\r\n")
	return len(rest) == 0 || rest[0] != '{'
}

// loginFailDelay slows down guessing the token through the login form.
const loginFailDelay = 500 * time.Millisecond

// Failed logins, all clients together: a burst of loginFailBurst, then
// one per loginFailEvery. The per-request delay alone does not stop a
// guesser who opens many connections at once. Over the limit, every
// login is answered 429 without looking at the token, so that guessing
// learns nothing; the bearer token still works for the API.
const (
	loginFailBurst = 10
	loginFailEvery = 6 * time.Second
)

// newLoginLimiter is the bucket of failed logins: a login may be tried
// while a token is left, and each failure spends one.
func newLoginLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Every(loginFailEvery), loginFailBurst)
}

// handleLogin is POST /login: form fields token and name (optional).
func (b *Bridge) handleLogin(w http.ResponseWriter, r *http.Request) {
	if tokens := b.loginFails.TokensAt(b.opts.Now()); tokens < 1 {
		wait := time.Duration((1 - tokens) * float64(loginFailEvery))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		writeLoginPage(w, http.StatusTooManyRequests, "Too many failed logins; try again in a minute.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		writeLoginPage(w, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if b.opts.Token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(b.opts.Token)) != 1 {
		b.loginFails.ReserveN(b.opts.Now(), 1)
		time.Sleep(loginFailDelay)
		w.Header().Set("WWW-Authenticate", `Bearer realm="medic"`)
		writeLoginPage(w, http.StatusUnauthorized, "Wrong token.")
		return
	}
	name, err := checkName(r.PostForm.Get("name"))
	if err != nil {
		writeLoginPage(w, http.StatusBadRequest, "Name: "+err.Error())
		return
	}
	epoch, err := b.sessionEpoch(r.Context())
	if err != nil {
		writeLoginPage(w, http.StatusServiceUnavailable, "Cannot sign in now: Redis: "+err.Error())
		return
	}
	exp := b.opts.Now().Add(SessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: b.newSession(name, epoch, exp), Path: "/", Expires: exp, MaxAge: int(SessionTTL / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleLogout is POST /logout: the session cookie is cleared and, for
// a valid session, the session epoch incremented, which ends every
// session signed in before it (this browser's cookie may have been
// copied). A request without a valid session changes nothing: a stranger
// cannot sign everyone out.
func (b *Bridge) handleLogout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(SessionCookie); err == nil && b.opts.Client != nil {
		if _, ok := b.validSession(r.Context(), ck.Value); ok {
			ctx, cancel := context.WithTimeout(r.Context(), epochTimeout)
			err := b.opts.Client.Incr(ctx, keys.SessionEpoch(b.opts.Keys.Root())).Err()
			cancel()
			if err != nil {
				writeLoginPage(w, http.StatusServiceUnavailable, "Signing out failed, the session is still valid: Redis: "+err.Error())
				return
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// newSession is "v2.EPOCH.EXPIRY.NAME.MAC": EPOCH the session epoch at
// login, EXPIRY in unix seconds, NAME base64url, MAC the HMAC-SHA256
// under the token of what precedes it.
func (b *Bridge) newSession(name string, epoch int64, exp time.Time) string {
	v := "v2." + strconv.FormatInt(epoch, 10) + "." + strconv.FormatInt(exp.Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
	return v + "." + b.mac("session", v)
}

func (b *Bridge) checkSession(v string, now time.Time) (name string, epoch int64, ok bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(b.mac("session", v[:i]))) {
		return "", 0, false
	}
	parts := strings.Split(v[:i], ".")
	if len(parts) != 4 || parts[0] != "v2" {
		return "", 0, false
	}
	epoch, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", 0, false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || now.Unix() >= exp {
		return "", 0, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		return "", 0, false
	}
	return string(raw), epoch, true
}

// mac is the base64url HMAC-SHA256 under the token of purpose and msg.
func (b *Bridge) mac(purpose, msg string) string {
	m := hmac.New(sha256.New, []byte(b.opts.Token))
	m.Write([]byte("medic " + purpose + "\x00" + msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkName trims a human's name (login, "by") and refuses control
// characters and overlong names: it ends up in logs, Redis and the page.
func checkName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxNameLen || !utf8.ValidString(s) {
		return "", errors.New("at most " + strconv.Itoa(maxNameLen) + " bytes of UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", errors.New("no control characters")
		}
	}
	return s, nil
}
