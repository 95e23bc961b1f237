package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "couchwatch test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// webConfig writes an exporter-toolkit web config: TLS and one basic-auth user.
func webConfig(t *testing.T, user, password string) (path string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "web.yml")
	yml := fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", certFile, keyFile, user, hash)
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pool
}

// /metrics and the status page over real TLS with basic auth, as CHT Watchdog
// scrapes them from another host.
func TestWebConfigTLSBasicAuth(t *testing.T) {
	const user, password = "watchdog", "w4tchd0g-7c1e"
	path, pool := webConfig(t, user, password)
	s := newStack(t, stackOpts{env: map[string]string{"COUCHWATCH_WEB_CONFIG_FILE": path}})
	// exporter-toolkit checks an unknown user against a cost-10 bcrypt hash, one at a
	// time: generous on a busy machine under -race.
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(t *testing.T, path, u, p string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "https://"+s.http+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if u != "" {
			req.SetBasicAuth(u, p)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tests := []struct {
		name, path, user, password string
		code                       int
		body                       string
	}{
		{"metrics with the right password", "/metrics", user, password, 200, "couchwatch_build_info"},
		{"status page with the right password", "/", user, password, 200, "couchwatch"},
		{"health with the right password", "/healthz", user, password, 200, "ok"},
		{"wrong password", "/metrics", user, password + "x", 401, "Unauthorized"},
		{"unknown user", "/metrics", "prometheus", password, 401, "Unauthorized"},
		{"no credentials", "/metrics", "", "", 401, "Unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, tc.path, tc.user, tc.password)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("GET %s = %d %.200q, want %d with %q", tc.path, code, body, tc.code, tc.body)
			}
			if tc.code == 401 && strings.Contains(body, "couchwatch_") {
				t.Fatal("metrics served without the password")
			}
		})
	}
	t.Run("plain http is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + s.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || strings.Contains(string(b), "couchwatch_") {
			t.Fatalf("plain http: %d %.200q, want 400 without metrics", resp.StatusCode, b)
		}
	})
	t.Run("an untrusted client sees a certificate error", func(t *testing.T) {
		_, err := (&http.Client{Timeout: time.Minute}).Get("https://" + s.http + "/metrics")
		var uerr x509.UnknownAuthorityError
		if err == nil || !strings.Contains(err.Error(), "certificate") || !errors.As(err, &uerr) {
			t.Fatalf("GET without the CA: %v, want an unknown-authority error", err)
		}
	})
	if strings.Contains(s.logs.String(), password) {
		t.Error("the web password reached the log")
	}
}

func TestWebConfigValidate(t *testing.T) {
	path, _ := webConfig(t, "u", "p")
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    WebConfig
		want string
	}{
		{"unset is plain http", WebConfig{MaxConns: 64}, ""},
		{"valid file", WebConfig{ConfigFile: path, MaxConns: 64}, ""},
		{"missing file", WebConfig{ConfigFile: "/nonexistent/web.yml", MaxConns: 64}, "COUCHWATCH_WEB_CONFIG_FILE /nonexistent/web.yml:"},
		{"missing certificate", WebConfig{ConfigFile: bad, MaxConns: 64}, "COUCHWATCH_WEB_CONFIG_FILE " + bad + ":"},
		{"no connections", WebConfig{MaxConns: 0}, "COUCHWATCH_HTTP_MAX_CONNS must be within [1, 4096], got 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConnCaps(t *testing.T) {
	tests := []struct {
		name              string
		nofile            uint64
		nodes             int
		httpCap, agentCap int
	}{
		{"plenty", 1 << 20, 3, 64, 64},
		{"ulimit 200, 3 nodes", 200, 3, 62, 62},
		{"ulimit 1024, 300 nodes: the reserve first", 1024, 300, 2, 2},
		{"ulimit 256, 20 nodes", 256, 20, 56, 56},
		{"ulimit 200, 20 nodes", 200, 20, 28, 28},
		{"below the reserve", 80, 3, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, a := connCaps(tc.nofile, tc.nodes, 64, 64)
			if h != tc.httpCap || a != tc.agentCap {
				t.Fatalf("connCaps = %d, %d, want %d, %d", h, a, tc.httpCap, tc.agentCap)
			}
		})
	}
}
