package couch

import (
	"bytes"
	"errors"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParsePrometheus parses a /_node/_local/_prometheus reply with the Prometheus text
// parser. It is tolerant of CouchDB 3.4.3's quirk: for 167 metrics the "# HELP" line
// ends with a bare CR instead of LF, so "# TYPE" shares its line and a strict parser
// takes it for part of the help text and loses the type (summaries then look like
// untyped gauges with a quantile label). A CR that starts a "# " comment is read as the
// line break it was meant to be; no other byte is changed. maxSeries bounds the
// number of samples accepted (0: no bound).
func ParsePrometheus(body []byte, maxSeries int) (map[string]*dto.MetricFamily, error) {
	const op = "prometheus"
	fixed := bytes.ReplaceAll(body, []byte("\r# "), []byte("\n# "))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(fixed))
	if err != nil {
		return nil, malformed(op, err)
	}
	if len(fams) == 0 {
		return nil, malformed(op, errors.New("no metric"))
	}
	if maxSeries > 0 {
		n := 0
		for _, f := range fams {
			n += len(f.GetMetric())
		}
		if n > maxSeries {
			return nil, &Error{Op: op, Reason: ReasonTooLarge, Err: fmt.Errorf("%d series, more than the %d allowed", n, maxSeries)}
		}
	}
	return fams, nil
}
