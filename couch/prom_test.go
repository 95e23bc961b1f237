package couch

import (
	"bytes"
	"os"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestParsePrometheusRecorded(t *testing.T) {
	body, err := os.ReadFile("testdata/prometheus.txt")
	if err != nil {
		t.Fatal(err)
	}
	fams, err := ParsePrometheus(body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 196 {
		t.Errorf("%d families, want the 196 TYPE comments of the reply", len(fams))
	}
	for name, want := range map[string]dto.MetricType{
		"couchdb_couch_log_requests_total":                 dto.MetricType_COUNTER, // HELP/TYPE on one line
		"couchdb_collect_results_time_seconds":             dto.MetricType_SUMMARY, // ditto, a summary
		"couchdb_erlang_memory_bytes":                      dto.MetricType_GAUGE,
		"couchdb_httpd_status_codes":                       dto.MetricType_COUNTER,
		"couchdb_erlang_distribution_recv_oct_bytes_total": dto.MetricType_COUNTER,
	} {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if f.GetType() != want {
			t.Errorf("%s type %v, want %v", name, f.GetType(), want)
		}
	}
	if s := fams["couchdb_collect_results_time_seconds"]; s != nil && len(s.GetMetric()[0].GetSummary().GetQuantile()) != 6 {
		t.Errorf("summary quantiles %v, want 6", s.GetMetric()[0].GetSummary())
	}
	if h := fams["couchdb_couch_log_requests_total"].GetHelp(); h != "number of logged messages" {
		t.Errorf("help %q: the TYPE comment leaked into it", h)
	}

	// Without the tolerance the same parser loses those types: the fix is needed.
	strict := expfmt.NewTextParser(model.LegacyValidation)
	raw, err := strict.TextToMetricFamilies(bytes.NewReader(body))
	if err == nil && raw["couchdb_couch_log_requests_total"].GetType() == dto.MetricType_COUNTER {
		t.Error("a strict parse keeps the type: the quirk is gone from the fixture?")
	}
}

func TestParsePrometheusBad(t *testing.T) {
	body, _ := os.ReadFile("testdata/prometheus.txt")
	for _, tc := range []struct {
		name string
		body []byte
		max  int
		want Reason
	}{
		{"empty", nil, 0, ReasonMalformed},
		{"json", []byte(`{"error":"unauthorized"}`), 0, ReasonMalformed},
		{"cut", body[:len(body)/2-7], 0, ReasonMalformed},
		{"too many series", body, 100, ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrometheus(tc.body, tc.max)
			if Classify(err) != tc.want {
				t.Errorf("err %v, want reason %s", err, tc.want)
			}
		})
	}
}

func FuzzParsePrometheus(f *testing.F) {
	body, _ := os.ReadFile("testdata/prometheus.txt")
	f.Add(body[:2000])
	f.Add([]byte("# HELP a b\r# TYPE a counter\na 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParsePrometheus(b, 1000)
	})
}
