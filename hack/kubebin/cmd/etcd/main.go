// Command etcd runs a single-member etcd through go.etcd.io/etcd/server/v3/embed.
//
// It accepts the subset of etcd's flags that controller-runtime's envtest
// passes, spelled pflag-style ("--flag"), so envtest's probing of "--help"
// finds them.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := pflag.NewFlagSet("etcd", pflag.ContinueOnError)
	name := fs.String("name", "default", "member name")
	dataDir := fs.String("data-dir", "", "path to the data directory")
	listenClient := fs.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated client URLs to listen on")
	advertiseClient := fs.String("advertise-client-urls", "", "comma-separated client URLs to advertise (default: listen-client-urls)")
	listenPeer := fs.String("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated peer URLs to listen on")
	advertisePeer := fs.String("initial-advertise-peer-urls", "", "comma-separated peer URLs to advertise (default: listen-peer-urls)")
	noFsync := fs.Bool("unsafe-no-fsync", false, "disable fsync (unsafe, for tests only)")
	quota := fs.Int64("quota-backend-bytes", 0, "backend size quota in bytes (0: etcd default)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		return 2
	}
	if *advertiseClient == "" {
		*advertiseClient = *listenClient
	}
	if *advertisePeer == "" {
		*advertisePeer = *listenPeer
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel
	if *quota > 0 {
		cfg.QuotaBackendBytes = *quota
	}
	var err error
	for _, u := range []struct {
		flag string
		val  string
		dst  *[]url.URL
	}{
		{"listen-client-urls", *listenClient, &cfg.ListenClientUrls},
		{"advertise-client-urls", *advertiseClient, &cfg.AdvertiseClientUrls},
		{"listen-peer-urls", *listenPeer, &cfg.ListenPeerUrls},
		{"initial-advertise-peer-urls", *advertisePeer, &cfg.AdvertisePeerUrls},
	} {
		if *u.dst, err = parseURLs(u.val); err != nil {
			fmt.Fprintf(os.Stderr, "etcd: --%s: %v\n", u.flag, err)
			return 2
		}
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start: %v\n", err)
		return 1
	}
	defer e.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcd: not ready after 60s")
		return 1
	case <-ctx.Done():
		return 0
	}
	select {
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd: %v\n", err)
		return 1
	case <-ctx.Done():
		return 0
	}
}

func parseURLs(s string) ([]url.URL, error) {
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", part, err)
		}
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, errors.New("no URL given")
	}
	return out, nil
}
