package manifests_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/medic/couchwatch/couch/couchtest"
	"github.com/medic/couchwatch/internal/testenv"
	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"
)

// selfSignedCert writes a certificate for 127.0.0.1 (its own CA) and its key into dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "couchwatch-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeTestFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeTestFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return certFile, keyFile
}

// TestWatchdogScrapesCouchwatchOverTLS runs a real Prometheus with the Watchdog scrape
// job (interval shortened for the test, targets and file paths set) against a real
// couchwatch serving TLS with basic auth through COUCHWATCH_WEB_CONFIG_FILE, plus the
// same job with a wrong password, and with the Watchdog rules loaded.
func TestWatchdogScrapesCouchwatchOverTLS(t *testing.T) {
	prom := tool(t, "prometheus", "/usr/bin")
	dir := t.TempDir()
	certFile, keyFile := selfSignedCert(t, dir)
	const user, password = "watchdog", "watchdog-test-password"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	writeTestFile(t, webCfg, fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n", certFile, keyFile, user, hash))

	cluster := couchtest.NewClusterT(t, 3, couchtest.Options{})
	listen := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	cw := exec.CommandContext(ctx, couchwatchBin)
	cw.Env = append(os.Environ(),
		"COUCHDB_SERVERS="+cluster.Targets(), "COUCHDB_USER="+cluster.User(), "COUCHDB_PASSWORD="+cluster.Password(),
		"COUCHWATCH_LISTEN="+listen, "COUCHWATCH_AGENT_LISTEN="+freeAddr(t), "COUCHWATCH_KUBE=off",
		"COUCHWATCH_WEB_CONFIG_FILE="+webCfg)
	var cwLog testenv.LogBuffer
	cw.Stdout, cw.Stderr = &cwLog, &cwLog
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	cwDone := make(chan error, 1)
	go func() { cwDone <- cw.Wait() }()

	// The Watchdog job as shipped, pointed at this couchwatch.
	var snippet struct {
		ScrapeConfigs []map[string]any `json:"scrape_configs"`
	}
	mustYAML(t, readFile(t, watchdogScrapeFile), &snippet)
	job := func(name, pw string) map[string]any {
		b, _ := json.Marshal(snippet.ScrapeConfigs[0])
		var j map[string]any
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		pwFile := filepath.Join(dir, name+".password")
		writeTestFile(t, pwFile, pw)
		j["job_name"] = name
		j["scrape_interval"], j["scrape_timeout"] = "1s", "1s" // Watchdog's 5m would make the test wait minutes
		j["basic_auth"].(map[string]any)["password_file"] = pwFile
		j["tls_config"].(map[string]any)["ca_file"] = certFile
		j["static_configs"] = []any{map[string]any{"targets": []any{listen}}}
		return j
	}
	rules, err := filepath.Abs(watchdogRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"evaluation_interval": "5m"},
		"rule_files":     []any{rules},
		"scrape_configs": []any{job("couchwatch", password), job("couchwatch-wrong-password", "not-the-password")},
	})
	if err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	writeTestFile(t, promCfg, string(cfg))
	promAddr := freeAddr(t)
	pc := exec.CommandContext(ctx, prom, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	var promLog testenv.LogBuffer
	pc.Stdout, pc.Stderr = &promLog, &promLog
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	promDone := make(chan error, 1)
	go func() { promDone <- pc.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-cwDone
		<-promDone
		if t.Failed() {
			t.Logf("couchwatch log:\n%s\nprometheus log:\n%s", cwLog.String(), promLog.String())
		}
	})

	query := func(q string) (map[string]string, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  []any             `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, s := range r.Data.Result {
			out[s.Metric["job"]] = fmt.Sprint(s.Value[1])
		}
		return out, nil
	}
	var up map[string]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		up, err = query("up")
		if err == nil && up["couchwatch"] == "1" && up["couchwatch-wrong-password"] != "" {
			break
		}
		select {
		case err := <-cwDone:
			t.Fatalf("couchwatch exited: %v", err)
		case err := <-promDone:
			t.Fatalf("prometheus exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful TLS scrape within 60s: up %v, err %v", up, err)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition with a deadline
	}
	if up["couchwatch-wrong-password"] != "0" {
		t.Errorf("scrape with a wrong password: up %s, want 0", up["couchwatch-wrong-password"])
	}
	if got, err := query(`couchwatch_build_info`); err != nil || got["couchwatch"] == "" || got["couchwatch-wrong-password"] != "" {
		t.Errorf("couchwatch_build_info by job %v (err %v): want it from the right password only", got, err)
	}
	// The Watchdog rules load in this Prometheus.
	resp, err := http.Get("http://" + promAddr + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rr struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rr.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s: health %s", r.Name, r.Health)
			}
		}
	}
	if want := len(alertRules(t, watchdogRulesFile)); n != want {
		t.Errorf("Prometheus loaded %d rules, want %d", n, want)
	}
}
