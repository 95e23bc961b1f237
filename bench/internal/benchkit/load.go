package benchkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// LoadConfig is an open-loop request generator: request i is due at Start+i/Rate,
// whatever happened to the earlier ones, so a stalled server cannot slow the offered
// load (no coordinated omission). It is bounded in count (Max) and time (the stop
// channel or ctx, and Timeout per request).
type LoadConfig struct {
	URL            string // e.g. http://127.0.0.1:port/medic
	Rate           float64
	Max            int           // most requests sent
	Timeout        time.Duration // client timeout of one request
	User, Password string
	MaxInFlight    int // requests beyond it are not sent and count as Dropped; default 5000
}

// Result is one request's outcome. Latency is measured from the time it was due.
type Result struct {
	Due     time.Time
	Latency time.Duration
	Status  int    // 0 on a client error
	Node    string // the "node" field of the reply body
	Err     error
}

// OK reports a 200 with no client error.
func (r Result) OK() bool { return r.Err == nil && r.Status == http.StatusOK }

// ErrDropped marks a request not sent because MaxInFlight were outstanding.
var ErrDropped = errors.New("dropped: too many requests in flight")

// NewClient returns an HTTP client for load: keep-alive, many idle connections, no
// proxy from the environment.
func NewClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// RunLoad sends requests until stop is closed, ctx ends or Max were sent, then waits for
// the outstanding ones (each bounded by Timeout) and returns every result in due order.
func RunLoad(ctx context.Context, cfg LoadConfig, stop <-chan struct{}) []Result {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 5000
	}
	client := NewClient(cfg.Timeout)
	defer client.CloseIdleConnections()
	results := make([]Result, 0, min(cfg.Max, 1<<20))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.MaxInFlight)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for i := 0; i < cfg.Max; i++ {
		due := start.Add(time.Duration(i) * interval)
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			break loop
		case <-stop:
			break loop
		case <-timer.C:
		}
		mu.Lock()
		results = append(results, Result{Due: due})
		slot := len(results) - 1
		mu.Unlock()
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			results[slot].Err = ErrDropped
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := doRequest(ctx, client, cfg, due)
			mu.Lock()
			results[slot] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

func doRequest(ctx context.Context, client *http.Client, cfg LoadConfig, due time.Time) Result {
	r := Result{Due: due}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		r.Err = err
		return r
	}
	if cfg.User != "" {
		req.SetBasicAuth(cfg.User, cfg.Password)
	}
	resp, err := client.Do(req)
	if err != nil {
		r.Err, r.Latency = err, time.Since(due)
		return r
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r.Latency = time.Since(due)
	r.Status = resp.StatusCode
	if err != nil {
		r.Err = fmt.Errorf("read body: %w", err)
		return r
	}
	var v struct {
		Node string `json:"node"`
	}
	if json.Unmarshal(body, &v) == nil {
		r.Node = v.Node
	}
	return r
}
