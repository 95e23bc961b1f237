// Package checks probes every CouchDB node, damps what it sees with rise/fall hysteresis
// and turns it into one Verdict per node. It knows nothing of HAProxy or Kubernetes: the
// main program maps verdicts to actions.
package checks

// Verdict is what couchwatch concludes about one node.
type Verdict int

// Verdicts, in increasing order of severity for the policy. Unknown never triggers an
// action: it is what a node is until it has passed or failed enough probes.
const (
	Unknown  Verdict = iota
	Up               // answering /_up with ok, not saturated
	Degraded         // up, but saturated past the sustain time
	Drain            // asked to leave the load balancer: maintenance_mode nolb/true
	Down             // failed Fall probes in a row
)

var verdictNames = [...]string{"unknown", "up", "degraded", "drain", "down"}

func (v Verdict) String() string {
	if v < 0 || int(v) >= len(verdictNames) {
		return "invalid"
	}
	return verdictNames[v]
}

// Verdicts lists every verdict, for metrics.
func Verdicts() []Verdict { return []Verdict{Unknown, Up, Degraded, Drain, Down} }
