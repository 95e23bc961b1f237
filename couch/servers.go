package couch

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the CouchDB port CHT assumes when COUCHDB_SERVERS names a bare host.
const DefaultPort = 5984

// Target is one entry of COUCHDB_SERVERS.
type Target struct {
	// Name is the entry as written, without scheme or trailing slash ("couchdb-1.local",
	// "127.0.0.1:15984"). CHT names its HAProxy servers after it.
	Name string
	// URL is the base URL of the node: scheme, host and an explicit port, nothing else.
	URL *url.URL
}

// ParseServers parses CHT's COUCHDB_SERVERS: a comma-separated list of `host`,
// `host:port` or `http(s)://host[:port]`. The scheme defaults to http and the port to
// 5984; spaces around entries are trimmed. Empty entries, duplicates, credentials in
// URLs, paths, queries and bad ports are rejected; every problem is reported, joined
// with errors.Join. Errors never repeat an entry that carried credentials.
func ParseServers(list string) ([]Target, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no servers: the list is empty")
	}
	var (
		targets []Target
		errs    []error
		seen    = map[string]int{} // normalised host:port -> entry number
	)
	for i, raw := range strings.Split(list, ",") {
		num := i + 1
		entry := strings.TrimSpace(raw)
		if entry == "" {
			errs = append(errs, fmt.Errorf("entry %d: empty", num))
			continue
		}
		t, err := parseServer(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d: %w", num, err))
			continue
		}
		key := strings.ToLower(t.URL.Host)
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("entry %d: %q duplicates entry %d", num, t.Name, prev))
			continue
		}
		seen[key] = num
		targets = append(targets, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return targets, nil
}

func parseServer(entry string) (Target, error) {
	if strings.Contains(entry, "://") {
		return parseServerURL(entry)
	}
	if strings.ContainsAny(entry, "/?#@ \t") {
		return Target{}, errors.New("a bare host may not contain '/', '?', '#', '@' or spaces (use http://host:port)")
	}
	host, port, err := splitHostPort(entry)
	if err != nil {
		return Target{}, err
	}
	return Target{Name: entry, URL: &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}}, nil
}

func parseServerURL(entry string) (Target, error) {
	u, err := url.Parse(entry)
	if err != nil {
		// url.Parse quotes the input, which may hold credentials.
		return Target{}, errors.New("not a valid URL")
	}
	if u.User != nil {
		return Target{}, errors.New("credentials in the URL are not allowed (use COUCHDB_USER and COUCHDB_PASSWORD)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Target{}, fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("%q: a server URL may not have a path, query or fragment", u.Redacted())
	}
	host, port, err := splitHostPort(u.Host)
	if err != nil {
		return Target{}, err
	}
	name := strings.TrimSuffix(strings.TrimPrefix(entry, u.Scheme+"://"), "/")
	return Target{Name: name, URL: &url.URL{Scheme: u.Scheme, Host: net.JoinHostPort(host, port)}}, nil
}

// splitHostPort accepts host, host:port, [v6], [v6]:port and a bare v6 literal.
func splitHostPort(s string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("empty host")
	}
	switch {
	case strings.HasPrefix(s, "["):
		if strings.HasSuffix(s, "]") {
			host, port = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ""
		} else if host, port, err = net.SplitHostPort(s); err != nil {
			return "", "", fmt.Errorf("%q: bad host:port", s)
		}
		if net.ParseIP(host) == nil {
			return "", "", fmt.Errorf("%q: bad IPv6 address", s)
		}
	case strings.Count(s, ":") > 1:
		if net.ParseIP(s) == nil {
			return "", "", fmt.Errorf("%q: bad host", s)
		}
		host = s
	case strings.Contains(s, ":"):
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", "", fmt.Errorf("%q: bad host:port", s)
		}
	default:
		host = s
	}
	if host == "" {
		return "", "", fmt.Errorf("%q: empty host", s)
	}
	if net.ParseIP(host) == nil && !validHostName(host) {
		return "", "", fmt.Errorf("%q: bad host name (letters, digits, '-' and '_' between dots)", s)
	}
	if port == "" {
		return host, strconv.Itoa(DefaultPort), nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strings.HasPrefix(port, "+") {
		return "", "", fmt.Errorf("%q: bad port %q (want 1-65535)", s, port)
	}
	return host, strconv.Itoa(p), nil
}

// validHostName reports whether h is a DNS name as resolvers and Kubernetes Services
// spell them: dot-separated labels of 1-63 letters, digits, '-' or '_' (CHT's
// couchdb-1.local, couchdb_1), 253 characters at most, a trailing dot allowed.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
