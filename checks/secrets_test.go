package checks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/internal/testenv"
)

// A canary password sent to servers that echo the request (body and headers) in their
// error replies never reaches the debug log (JSON or text), the status, or the metrics.
func TestSecretsNeverLeave(t *testing.T) {
	const canary = "canary-7f3e9b-pw"
	const cookie = "cookie-canary-51d2"
	echo := func(r *http.Request) string {
		var b strings.Builder // the body first: a cut after a few bytes must not save us
		body := make([]byte, 4096)
		k, _ := r.Body.Read(body)
		b.Write(body[:k])
		_ = r.Header.Write(&b)
		return strings.Trim(fmt.Sprintf("%q", b.String()), `"`)
	}
	servers := map[string]http.HandlerFunc{
		"login echoes": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":"unauthorized","reason":"%s"}`, echo(r))
		},
		"calls echo": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/_session" {
				http.SetCookie(w, &http.Cookie{Name: "AuthSession", Value: cookie})
				_, _ = w.Write([]byte(`{"ok":true}`))
				return
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"error":"unknown_error","reason":"%s"}`, echo(r))
		},
	}
	handlers := map[string]func(*testenv.LogBuffer) slog.Handler{
		"json": func(b *testenv.LogBuffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		"text": func(b *testenv.LogBuffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	}
	for sname, h := range servers {
		for hname, newHandler := range handlers {
			t.Run(sname+"/"+hname, func(t *testing.T) {
				srv := httptest.NewServer(h)
				defer srv.Close()
				u, _ := url.Parse(srv.URL)
				node, err := couch.NewNode(couch.Target{Name: "echo", URL: u}, couch.Options{User: "medic", Password: canary})
				if err != nil {
					t.Fatal(err)
				}
				defer node.Close()
				var logs testenv.LogBuffer
				reg := prometheus.NewRegistry()
				cfg := testConfig()
				r := NewRunner(cfg, []*couch.Node{node}, slog.New(newHandler(&logs)), mustMetrics(t, reg), nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				done := make(chan struct{})
				go func() { _ = r.Run(ctx); close(done) }()
				for r.Snapshot()[0].Verdict != Down && ctx.Err() == nil {
					select {
					case <-r.Changed():
					case <-ctx.Done():
					}
				}
				// and until a membership probe has failed too (kivik's path), logged at debug
				for !strings.Contains(logs.String(), "membership") && ctx.Err() == nil {
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Millisecond):
					}
				}
				cancel()
				<-done
				st := r.Snapshot()[0]
				if st.Verdict != Down || st.LastError == "" {
					t.Fatalf("status %+v: want down with LastError", st)
				}
				var metrics bytes.Buffer
				mfs, err := reg.Gather()
				if err != nil {
					t.Fatal(err)
				}
				for _, mf := range mfs {
					_, _ = expfmt.MetricFamilyToText(&metrics, mf)
				}
				for where, text := range map[string]string{"log": logs.String(), "status": fmt.Sprintf("%+v", st), "metrics": metrics.String()} {
					for _, secret := range []string{canary, cookie} {
						if strings.Contains(text, secret) {
							t.Fatalf("%s leaks %q:\n%s", where, secret, text)
						}
					}
				}
				if !strings.Contains(logs.String(), "probe failed") || !strings.Contains(logs.String(), "redacted") && sname == "calls echo" {
					t.Fatalf("the debug log lacks the failures (or their redacted echo):\n%s", logs.String())
				}
				t.Logf("LastError: %s", st.LastError)
			})
		}
	}
}
