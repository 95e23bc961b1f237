package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic/couchwatch/checks"
	"github.com/medic/couchwatch/couch"
	"github.com/medic/couchwatch/internal/promreg"
)

// ShardsConfig sets how the n=1 blast radius is read: which shard ranges of which
// databases a lost node takes with it.
type ShardsConfig struct {
	Refresh time.Duration `env:"COUCHWATCH_SHARDS_REFRESH, default=10m" desc:"re-read the shard maps (/_all_dbs, /{db}/_shards) this often, and at once when membership changes; 0 turns the blast radius off"`
	MaxDBs  int           `env:"COUCHWATCH_SHARDS_MAX_DBS, default=100" desc:"most databases whose shard maps are read (CHT's own first)"`
}

// Validate reports every problem at once.
func (c ShardsConfig) Validate() error {
	var errs []error
	if c.Refresh < 0 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_SHARDS_REFRESH must be >= 0 (0: off), got %s", c.Refresh))
	}
	if c.MaxDBs < 1 {
		errs = append(errs, fmt.Errorf("COUCHWATCH_SHARDS_MAX_DBS must be >= 1, got %d", c.MaxDBs))
	}
	return errors.Join(errs...)
}

// chtDatabases are read first (CHT's own), so the bound on databases never drops them
// for per-user meta databases.
var chtDatabases = []string{"medic", "_users", "medic-sentinel", "medic-users-meta", "medic-logs", "medic-audit", "_replicator"}

// shardsCheck is how often membership (cluster_nodes of one node) is compared with the
// one the shard maps were read under. One small call; the maps are re-read only when it
// changed, or every Refresh (new databases).
const shardsCheck = 30 * time.Second

// maxAllDBs bounds the /_all_dbs listing (and the node's body cap bounds its bytes).
const maxAllDBs = 10000

// blastView is the n=1 blast radius: the shard ranges no answering node holds.
type blastView struct {
	Known          bool      `json:"known"` // shard maps read
	ReadAt         time.Time `json:"read_at"`
	DBs            int       `json:"databases_read"`
	Truncated      bool      `json:"truncated"` // more databases than COUCHWATCH_SHARDS_MAX_DBS
	Error          string    `json:"error,omitempty"`
	LostNodes      []string  `json:"lost_nodes,omitempty"` // Erlang names: down, hung or maintenance_mode = true
	Lost           []lostDB  `json:"unavailable,omitempty"`
	LoginsAffected bool      `json:"logins_affected"` // part of _users is unavailable
}

type lostDB struct {
	DB     string   `json:"database"`
	Ranges []string `json:"ranges"`
	Of     int      `json:"of"`
	Nodes  []string `json:"nodes"` // the lost nodes that held them
}

type shardWatcher struct {
	cfg     ShardsConfig
	timeout time.Duration
	nodes   []*couch.Node
	snap    func() []checks.Status
	log     *slog.Logger
	tl      *timeline

	ranges    *prometheus.GaugeVec
	dbsLost   prometheus.Gauge
	logins    prometheus.Gauge
	readTS    prometheus.Gauge
	readFails prometheus.Counter

	mu      sync.Mutex
	maps    map[string]couch.ShardMap
	order   []string
	members []string
	view    blastView
	lastKey string
}

func newShardWatcher(cfg ShardsConfig, timeout time.Duration, nodes []*couch.Node, snap func() []checks.Status,
	log *slog.Logger, tl *timeline, reg prometheus.Registerer) (*shardWatcher, error) {
	w := &shardWatcher{cfg: cfg, timeout: timeout, nodes: nodes, snap: snap, log: log, tl: tl,
		ranges: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "couchwatch_shard_ranges_unavailable",
			Help: "Shard ranges of the database that no answering node holds (n=1: a lost node's ranges). Databases: CHT's first, at most COUCHWATCH_SHARDS_MAX_DBS."},
			[]string{"database"}),
		dbsLost: prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_shard_databases_unavailable",
			Help: "Databases with at least one unavailable shard range."}),
		logins: prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_shard_logins_affected",
			Help: "1 while part of _users is unavailable: users whose documents live there cannot log in."}),
		readTS: prometheus.NewGauge(prometheus.GaugeOpts{Name: "couchwatch_shard_maps_read_timestamp_seconds",
			Help: "Unix time the shard maps were last read."}),
		readFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "couchwatch_shard_map_read_errors_total",
			Help: "Failed reads of /_all_dbs or /{db}/_shards."}),
	}
	return w, promreg.Register(reg, w.ranges, w.dbsLost, w.logins, w.readTS, w.readFails)
}

// run reads the shard maps at start (retrying every second until a node answers),
// when membership changes and every Refresh.
func (w *shardWatcher) run(ctx context.Context) {
	every := min(shardsCheck, w.cfg.Refresh)
	t := time.NewTicker(min(every, time.Second))
	defer t.Stop()
	var readAt time.Time
	for {
		if n := w.answering(); n != nil {
			members, err := w.clusterNodes(ctx, n)
			w.mu.Lock()
			changed := err == nil && !slices.Equal(members, w.members)
			w.mu.Unlock()
			if changed || readAt.IsZero() || time.Since(readAt) >= w.cfg.Refresh {
				if err := w.read(ctx, n, members); err != nil {
					w.readFails.Inc()
					w.log.Warn("shard maps not read: the blast radius keeps the last maps", "node", n.Name(), "err", err)
				} else {
					if readAt.IsZero() {
						t.Reset(every)
					}
					readAt = time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// answering is a node that answers /_up ok (any shard map is the cluster's).
func (w *shardWatcher) answering() *couch.Node {
	for i, st := range w.snap() {
		if (st.Verdict == checks.Up || st.Verdict == checks.Degraded) && i < len(w.nodes) {
			return w.nodes[i]
		}
	}
	return nil
}

func (w *shardWatcher) clusterNodes(ctx context.Context, n *couch.Node) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	m, err := n.Membership(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(m.ClusterNodes)
	slices.Sort(out)
	return out, nil
}

// read lists the databases (CHT's first, at most MaxDBs) and reads their shard maps.
func (w *shardWatcher) read(ctx context.Context, n *couch.Node, members []string) error {
	lctx, cancel := context.WithTimeout(ctx, w.timeout)
	all, err := n.AllDBs(lctx, maxAllDBs)
	cancel()
	if err != nil {
		w.setError(err)
		return err
	}
	order := pickDatabases(all, w.cfg.MaxDBs)
	maps := make(map[string]couch.ShardMap, len(order))
	for _, db := range order {
		sctx, cancel := context.WithTimeout(ctx, w.timeout)
		m, err := n.Shards(sctx, db)
		cancel()
		if err != nil {
			if ce := (*couch.Error)(nil); errors.As(err, &ce) && ce.Status == 404 {
				continue // deleted since the listing
			}
			w.setError(err)
			return err
		}
		maps[db] = m
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maps, w.order, w.members = maps, order, members
	w.view.Known, w.view.ReadAt, w.view.DBs, w.view.Error = true, time.Now(), len(order), ""
	w.view.Truncated = len(all) > len(order)
	w.readTS.Set(float64(time.Now().Unix()))
	w.ranges.Reset()
	for _, db := range order {
		w.ranges.WithLabelValues(db).Set(0)
	}
	w.log.Info("shard maps read", "node", n.Name(), "databases", len(order), "truncated", w.view.Truncated)
	return nil
}

func (w *shardWatcher) setError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.view.Error = err.Error()
}

// pickDatabases returns CHT's databases that exist, then the others in CouchDB's order,
// at most max in all.
func pickDatabases(all []string, limit int) []string {
	out := make([]string, 0, min(len(all), limit))
	for _, db := range chtDatabases {
		if slices.Contains(all, db) && len(out) < limit {
			out = append(out, db)
		}
	}
	for _, db := range all {
		if len(out) >= limit {
			break
		}
		if !slices.Contains(chtDatabases, db) {
			out = append(out, db)
		}
	}
	return out
}

// lostNodes are the Erlang names of the nodes whose shards the cluster cannot read:
// down (crashed or hung), or in maintenance_mode = true (nolb keeps serving shards).
// A node whose name was never learnt (down since couchwatch started) is named by
// elimination when exactly one cluster member is unaccounted for.
func lostNodes(statuses []checks.Status, members []string) []string {
	var lost []string
	named := map[string]bool{}
	unnamedLost := 0
	for _, st := range statuses {
		if st.ErlangName != "" {
			named[st.ErlangName] = true
		}
		gone := st.Verdict == checks.Down || st.DataUnavailable ||
			(st.Verdict == checks.Drain && st.UpStatus == couch.StatusMaintenanceMode)
		switch {
		case !gone:
		case st.ErlangName != "":
			lost = append(lost, st.ErlangName)
		default:
			unnamedLost++
		}
	}
	if unnamedLost == 1 {
		var unknown []string
		for _, m := range members {
			if !named[m] {
				unknown = append(unknown, m)
			}
		}
		if len(unknown) == 1 {
			lost = append(lost, unknown[0])
		}
	}
	slices.Sort(lost)
	return lost
}

// update recomputes the blast radius from one pass's statuses; it logs, records and
// sets the metrics when it changes. failOpen: every node looks bad, which says more
// about couchwatch's view than about the shards: nothing is claimed lost then.
func (w *shardWatcher) update(now time.Time, statuses []checks.Status, failOpen bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.view.Known {
		return
	}
	var lost []string
	if !failOpen {
		lost = lostNodes(statuses, w.members)
	}
	view := w.view
	view.LostNodes, view.Lost, view.LoginsAffected = lost, nil, false
	for _, db := range w.order {
		m := w.maps[db]
		if m == nil {
			continue
		}
		l := lostDB{DB: db, Of: len(m)}
		holders := map[string]bool{}
		for _, rng := range m.Ranges() {
			copies := m[rng]
			if len(lost) > 0 && !slices.ContainsFunc(copies, func(c string) bool { return !slices.Contains(lost, c) }) {
				l.Ranges = append(l.Ranges, rng)
				for _, c := range copies {
					holders[c] = true
				}
			}
		}
		w.ranges.WithLabelValues(db).Set(float64(len(l.Ranges)))
		if len(l.Ranges) > 0 {
			for h := range holders {
				l.Nodes = append(l.Nodes, h)
			}
			slices.Sort(l.Nodes)
			view.Lost = append(view.Lost, l)
			view.LoginsAffected = view.LoginsAffected || db == "_users"
		}
	}
	w.view = view
	w.dbsLost.Set(float64(len(view.Lost)))
	w.logins.Set(b2f(view.LoginsAffected))

	var parts []string
	for _, l := range view.Lost {
		parts = append(parts, fmt.Sprintf("%s %d/%d", l.DB, len(l.Ranges), l.Of))
	}
	key := strings.Join(parts, ",")
	if key == w.lastKey {
		return
	}
	w.lastKey = key
	switch {
	case key == "":
		w.log.Info("every shard range is available again")
		w.tl.add(Event{At: now, Kind: evShards, Text: "every shard range available again"})
	default:
		why := "n=1: each shard lives on one node; reads and writes of these ranges fail until the node is back"
		if view.LoginsAffected {
			why = "logins affected: part of _users is unavailable; " + why
		}
		w.log.Warn("shard ranges unavailable", "nodes", strings.Join(lost, ","), "databases", key,
			"logins_affected", view.LoginsAffected, "reason", why)
		w.tl.add(Event{At: now, Kind: evShards, Node: strings.Join(lost, ","), Text: "unavailable: " + key, Reason: why})
	}
}

func (w *shardWatcher) snapshot() blastView {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.view
	v.Lost = slices.Clone(v.Lost)
	return v
}

// blastView is the last blast radius; with the watcher off it says so.
func (a *app) blastView([]checks.Status) blastView {
	if a.shards == nil {
		return blastView{Error: "off (COUCHWATCH_SHARDS_REFRESH=0)"}
	}
	return a.shards.snapshot()
}
