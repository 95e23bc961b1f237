package haproxy

// AdminState is the administrative state couchwatch sets on a server through the
// runtime API ("set server <b>/<s> state ready|drain|maint").
type AdminState string

// The admin states.
const (
	StateReady AdminState = "ready"
	StateDrain AdminState = "drain"
	StateMaint AdminState = "maint"
)

// Server is one server of a backend as HAProxy reports it ("show servers state" joined
// with "show stat").
type Server struct {
	Name string
	Addr string // IP address as HAProxy holds it
	Port int
	// Admin is derived from srv_admin_state (decimal bit field): any maint bit => maint,
	// else any drain bit => drain, else ready.
	Admin AdminState
	// AdminBits is the raw srv_admin_state (0x01 forced maint, 0x02 inherited maint,
	// 0x04 config maint, 0x08 forced drain, 0x10 drain via track, 0x20 maint via
	// resolution, 0x40 maint via hostname).
	AdminBits int
	// OpUp is the operational state: srv_op_state == 2 (running).
	OpUp      bool
	OpState   int // raw srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
	Weight    int // current effective weight (show stat "weight")
	UWeight   int // user weight, what "set server ... weight" sets (show servers state srv_uweight)
	IWeight   int // initial (config) weight (show servers state srv_iweight)
	CurConns  int // current sessions (show stat "scur")
	Status    string
	CheckDesc string // last check status (show stat "check_status"), "" if none
	AgentDesc string // last agent status (show stat "agent_status"), "" if none
	Traffic   Traffic
}

// Observed is the state of one backend, re-read on every pass.
type Observed struct {
	Backend string
	Servers []Server // in HAProxy's order
}

// Want is what couchwatch wants for one server.
type Want struct {
	State AdminState
	// Weight is the absolute weight (0-256) wanted; -1 means "leave the weight alone".
	Weight int
	// Addr and Port, when Addr is not "", are the address wanted ("set server ... addr").
	Addr string
	Port int
	// Verified reports that the node just passed its checks; Plan never emits "ready"
	// for a server whose Want is not Verified, unless Desired.FailOpen is set.
	Verified bool
	// EndSessions asks that the sessions still on the server be ended once it is out
	// ("shutdown sessions server"): its node is down or hung, and with CHT's
	// "timeout server 100h" a request on it would otherwise wait for hours.
	EndSessions bool
	// Reason is a bounded token used as a metric label: "up", "down", "maintenance",
	// "saturated", "flapping", "fail_open". Detail is free text for logs.
	Reason string
	Detail string
}

// Desired is the state wanted for a backend's servers, keyed by HAProxy server name.
// Servers not in the map are left alone.
type Desired struct {
	Backend string
	Servers map[string]Want
	// FailOpen hands every server wanted ready (or with no state wanted) back to
	// HAProxy: ready, initial weight, verified or not. Set when every node looks bad at
	// once (DESIGN.md §3 rule 1). Servers wanted in drain or maint stay so.
	FailOpen bool
	// Refused are changes the policy itself held back (load budget, capacity floor,
	// flapping); the Reconciler logs and counts them with Plan's own skips.
	Refused []Skip
}

// Budget limits what a single Plan may take out of rotation.
type Budget struct {
	// MinReady is the number of servers that must keep serving after every command of
	// a plan; values below 1 mean 1. A server serves when it is watched (named in
	// Desired.Servers), administratively ready, operationally up in HAProxy and has a
	// weight above 0 (see Serving).
	MinReady int
}

// Command operations.
const (
	OpAddr     = "addr"
	OpWeight   = "weight"
	OpState    = "state"
	OpShutdown = "shutdown" // "shutdown sessions server"
)

// Command is one runtime API command with the reason it is sent. It carries what it
// sets (State, Weight), so nothing downstream re-parses Text.
type Command struct {
	Server string
	Op     string     // OpAddr, OpWeight, OpState, OpShutdown
	State  AdminState // what an OpState command sets
	Weight int        // what an OpWeight command sets
	Text   string     // the exact runtime API command, e.g. "set server couchdb-servers/n1 state drain"
	Reason string     // Want.Reason
	Detail string     // Want.Detail
	// TakeOut marks the command that stops a serving server from serving (and the
	// shutdown after it): Plan orders these last and admits only as many as the
	// minimum allows. Adds marks the commands of a server that starts serving.
	TakeOut, Adds bool
}

// Skip is a change Plan refused to make, with the rule that stopped it.
type Skip struct {
	Server string
	Want   AdminState
	Reason string // e.g. "last ready server", "not verified"
}

// Serving reports whether HAProxy would send traffic to s: administratively ready,
// operationally up (its own checks, if any, pass) and a weight above 0. Plan also
// requires the server to be watched.
func Serving(s Server) bool {
	return s.Admin == StateReady && s.OpUp && s.UWeight > 0
}
