package couchtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/medic/couchwatch/couch"
)

// systemFixtures holds the idle and loaded _system replies of node1, decoded.
type systemFixtures struct {
	idle, load map[string]any
	idleRaw    []byte
	loadRaw    []byte
}

func loadSystemFixtures() (systemFixtures, error) {
	var s systemFixtures
	var err error
	if s.idleRaw, err = couch.Recorded("system_idle.json"); err != nil {
		return s, fmt.Errorf("couchtest: %w", err)
	}
	if s.loadRaw, err = couch.Recorded("system_under_load.json"); err != nil {
		return s, fmt.Errorf("couchtest: %w", err)
	}
	if s.idle, err = decodeObject(s.idleRaw); err != nil {
		return s, fmt.Errorf("couchtest: system_idle.json: %w", err)
	}
	if s.load, err = decodeObject(s.loadRaw); err != nil {
		return s, fmt.Errorf("couchtest: system_under_load.json: %w", err)
	}
	return s, nil
}

func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// render returns the _system body of node idx at load level (0..1): the recorded
// bodies verbatim at 0 and 1, every number interpolated in between.
func (s systemFixtures) render(level float64, idx int) ([]byte, error) {
	switch level {
	case 0:
		return renameNodes(s.idleRaw, idx), nil
	case 1:
		return renameNodes(s.loadRaw, idx), nil
	}
	b, err := json.Marshal(interpolate(s.idle, s.load, level))
	if err != nil {
		return nil, fmt.Errorf("couchtest: render _system: %w", err)
	}
	return renameNodes(append(b, '\n'), idx), nil
}

// interpolate blends two decoded JSON values: numbers linearly, objects key by key (a
// key missing on one side counts as zero there), anything else switches at 0.5.
func interpolate(a, b any, f float64) any {
	switch bv := b.(type) {
	case json.Number:
		av, _ := a.(json.Number)
		return blendNumber(av, bv, f)
	case map[string]any:
		am, _ := a.(map[string]any)
		out := make(map[string]any, len(bv))
		for k, v := range bv {
			out[k] = interpolate(am[k], v, f)
		}
		for k, v := range am {
			if _, ok := bv[k]; !ok {
				out[k] = interpolate(v, zeroLike(v), f)
			}
		}
		return out
	}
	if f < 0.5 && a != nil {
		return a
	}
	return b
}

func zeroLike(v any) any {
	switch v.(type) {
	case json.Number:
		return json.Number("0")
	case map[string]any:
		return map[string]any{}
	}
	return v
}

func blendNumber(a, b json.Number, f float64) json.Number {
	if a == "" {
		a = "0"
	}
	ai, aerr := a.Int64()
	bi, berr := b.Int64()
	if aerr == nil && berr == nil {
		return json.Number(strconv.FormatInt(int64(math.Round(float64(ai)+float64(bi-ai)*f)), 10))
	}
	af, _ := a.Float64()
	bf, _ := b.Float64()
	return json.Number(strconv.FormatFloat(af+(bf-af)*f, 'g', -1, 64))
}

// renameNodes rewrites a body recorded on node1 as seen from node idx: couchdb1 and
// couchdb<idx+1> swap names.
func renameNodes(body []byte, idx int) []byte {
	if idx == 0 {
		return body
	}
	self := nodeName(idx)
	r := strings.NewReplacer(nodeName(0), self, self, nodeName(0))
	return []byte(r.Replace(string(body)))
}
