package benchkit

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseMetricsHistogram(t *testing.T) {
	text := `# HELP h a histogram
# TYPE h histogram
h_bucket{le="0.005"} 3
h_bucket{le="0.01"} 9
h_bucket{le="+Inf"} 10
h_sum 0.07
h_count 10
v{node="127.0.0.1:1",verdict="up"} 1
v{node="127.0.0.1:2",verdict="up"} 0
v{node="a,b",verdict="up"} 1
`
	m := ParseMetrics(text)
	if got := m.Count("v", map[string]string{"verdict": "up"}, 1); got != 2 {
		t.Errorf("Count = %d, want 2", got)
	}
	h := m.Histogram("h")
	if h.Count != 10 || math.Abs(h.Mean()-0.007) > 1e-9 {
		t.Errorf("count %v mean %v", h.Count, h.Mean())
	}
	for _, c := range []struct {
		q, want float64
	}{{0.2, 0.005}, {0.5, 0.01}, {0.9, 0.01}, {0.99, math.Inf(1)}} {
		if got := h.UpperBound(c.q); got != c.want {
			t.Errorf("UpperBound(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	d := h.Sub(Histogram{Count: 3, Sum: 0.01, Buckets: []Bucket{{0.005, 3}, {0.01, 3}, {math.Inf(1), 3}}})
	if d.Count != 7 || d.Buckets[0].Count != 0 || d.UpperBound(0.5) != 0.01 {
		t.Errorf("Sub = %+v", d)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {0, 1}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("Median = %v", got)
	}
	if got := Median([]time.Duration{4, 1, 2, 3}); got != 2 {
		t.Errorf("Median even = %v, want 2 (integer mean of 2 and 3)", got)
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.HWMKiB < s.RSSKiB || s.CPUTicks < 0 {
		t.Errorf("sample %+v", s)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	tb := Table{Header: []string{"a", "long header"}}
	tb.Add("x", "1")
	tb.Write(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || lines[0] != "| a | long header |" || lines[2] != "| x | 1           |" {
		t.Errorf("table:\n%s", b.String())
	}
}
