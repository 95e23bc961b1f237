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
	// Reason is a bounded token used as a metric label: "up", "down", "maintenance",
	// "saturated", "recovering", "fail_open". Detail is free text for logs.
	Reason string
	Detail string
}

// Desired is the state wanted for a backend's servers, keyed by HAProxy server name.
// Servers not in the map are left alone.
type Desired struct {
	Backend string
	Servers map[string]Want
	// FailOpen hands every server back to HAProxy: ready, initial weight. Set when every
	// node looks bad at once (DESIGN.md §3 rule 1).
	FailOpen bool
}

// Budget limits what a single Plan may take out of rotation.
type Budget struct {
	// MinReady is the number of servers whose admin state must stay ready (not
	// drain/maint) after a plan; values below 1 mean 1. Plan counts admin state
	// only: HAProxy's own op state is not consulted.
	MinReady int
}

// Command is one runtime API command with the reason it is sent.
type Command struct {
	Server string
	Op     string // "state", "weight", "addr"
	Text   string // the exact runtime API command, e.g. "set server couchdb-servers/n1 state drain"
	Reason string // Want.Reason
	Detail string // Want.Detail
}

// Skip is a change Plan refused to make, with the rule that stopped it.
type Skip struct {
	Server string
	Want   AdminState
	Reason string // e.g. "last ready server", "not verified"
}
