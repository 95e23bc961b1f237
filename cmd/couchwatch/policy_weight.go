package main

import (
	"math"
	"time"

	"github.com/medic/couchwatch/checks"
)

// targetWeight maps a load score to a weight: WeightMax at or below LoadLow, WeightMin
// at or above LoadHigh, linear between.
func targetWeight(cfg PolicyConfig, st checks.Status) int {
	if !st.ScoreKnown || cfg.loadHigh <= cfg.loadLow {
		if st.Verdict == checks.Degraded {
			return cfg.WeightMin
		}
		return cfg.WeightMax
	}
	f := (st.Score - cfg.loadLow) / (cfg.loadHigh - cfg.loadLow)
	f = math.Max(0, math.Min(1, f))
	return cfg.WeightMax - int(math.Round(f*float64(cfg.WeightMax-cfg.WeightMin)))
}

// nextWeight moves the load weight from its last value toward the target by at most
// WeightStep (a dead band ignores jitter); the weight applied is the load weight capped
// by the slow-start ramp of a returning server. It returns both.
func nextWeight(cfg PolicyConfig, st checks.Status, prev policyState, srv string, since, now time.Time) (applied, load int) {
	target := targetWeight(cfg, st)
	cur, ok := prev.weight[srv]
	if !ok {
		cur = target
	}
	deadband := max(1, (cfg.WeightMax-cfg.WeightMin)/20)
	load = cur
	if diff := target - cur; abs(diff) >= deadband || target == cfg.WeightMax || target == cfg.WeightMin {
		load = cur + max(-cfg.WeightStep, min(cfg.WeightStep, diff))
	}
	load = max(cfg.WeightMin, min(cfg.WeightMax, load))
	applied = load
	if !since.IsZero() && cfg.SlowStart > 0 {
		if el := now.Sub(since); el < cfg.SlowStart {
			ramp := cfg.WeightMin + int(float64(cfg.WeightMax-cfg.WeightMin)*float64(el)/float64(cfg.SlowStart))
			applied = min(applied, ramp)
		}
	}
	return applied, load
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
