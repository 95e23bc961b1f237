package benchkit

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a parsed /metrics page.
type Metrics []Sample

// ParseMetrics reads the Prometheus text format leniently: comments and lines it
// cannot read are skipped (label values with escaped quotes are not expected here).
func ParseMetrics(text string) Metrics {
	var out Metrics
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, ok := parseSample(line)
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func parseSample(line string) (Sample, bool) {
	s := Sample{Labels: map[string]string{}}
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		j := strings.LastIndexByte(line, '}')
		if j < i {
			return s, false
		}
		s.Name = line[:i]
		for _, kv := range splitLabels(line[i+1 : j]) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			s.Labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
		rest = strings.TrimSpace(line[j+1:])
	} else {
		name, r, ok := strings.Cut(line, " ")
		if !ok {
			return s, false
		}
		s.Name, rest = name, strings.TrimSpace(r)
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return s, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, false
	}
	s.Value = v
	return s, true
}

// splitLabels splits a="x",b="y,z" on the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQ = !inQ
		case ',':
			if !inQ {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (m Metrics) match(name string, labels map[string]string) []Sample {
	var out []Sample
	for _, s := range m {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range labels {
			if s.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// Sum adds every sample of name whose labels include labels.
func (m Metrics) Sum(name string, labels map[string]string) float64 {
	var t float64
	for _, s := range m.match(name, labels) {
		t += s.Value
	}
	return t
}

// Count counts the samples of name with labels whose value is v.
func (m Metrics) Count(name string, labels map[string]string, v float64) int {
	n := 0
	for _, s := range m.match(name, labels) {
		if s.Value == v {
			n++
		}
	}
	return n
}

// Histogram is one (label-less) histogram's cumulative buckets.
type Histogram struct {
	Count, Sum float64
	Buckets    []Bucket // sorted by upper bound
}

// Bucket is one cumulative bucket.
type Bucket struct {
	LE    float64
	Count float64
}

// Histogram reads the histogram family name (all label sets added together).
func (m Metrics) Histogram(name string) Histogram {
	h := Histogram{Count: m.Sum(name+"_count", nil), Sum: m.Sum(name+"_sum", nil)}
	by := map[float64]float64{}
	for _, s := range m.match(name+"_bucket", nil) {
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			continue
		}
		by[le] += s.Value
	}
	for le, c := range by {
		h.Buckets = append(h.Buckets, Bucket{LE: le, Count: c})
	}
	sort.Slice(h.Buckets, func(i, j int) bool { return h.Buckets[i].LE < h.Buckets[j].LE })
	return h
}

// Sub returns h minus an earlier reading of the same histogram.
func (h Histogram) Sub(earlier Histogram) Histogram {
	out := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for _, b := range h.Buckets {
		for _, e := range earlier.Buckets {
			if e.LE == b.LE {
				b.Count -= e.Count
			}
		}
		out.Buckets = append(out.Buckets, b)
	}
	return out
}

// Mean is Sum/Count (NaN when empty).
func (h Histogram) Mean() float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

// UpperBound returns the upper bound of the first bucket holding the q-quantile: the
// quantile is at most this (+Inf when it lies in the last bucket, NaN when empty).
func (h Histogram) UpperBound(q float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	want := q * h.Count
	for _, b := range h.Buckets {
		if b.Count >= want {
			return b.LE
		}
	}
	return math.Inf(1)
}
