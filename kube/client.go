package kube

import (
	"errors"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoConfig means Kubernetes mode is "on" but no client configuration was found.
var ErrNoConfig = errors.New("no Kubernetes configuration: not in a cluster and KUBECONFIG unset")

// NewClient returns (nil, false, nil) when Kubernetes is off: mode "off", or
// mode "auto" outside a cluster without KUBECONFIG. The caller logs that.
// With mode "on", a missing configuration is an error. A KUBECONFIG that is set
// but unreadable is an error in every mode but "off".
func NewClient(cfg Config) (kubernetes.Interface, bool, error) {
	if cfg.Mode == ModeOff {
		return nil, false, nil
	}
	rc, err := restConfig(cfg)
	if errors.Is(err, ErrNoConfig) && cfg.Mode == ModeAuto {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, false, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, true, nil
}

func restConfig(cfg Config) (*rest.Config, error) {
	var rc *rest.Config
	if cfg.Kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(cfg.Kubeconfig)}
		c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			// The path may name a user; never the file's content.
			return nil, fmt.Errorf("load KUBECONFIG: %w", err)
		}
		rc = c
	} else {
		c, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, ErrNoConfig
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		rc = c
	}
	rc.UserAgent = "couchwatch"
	// The flagger writes rarely; informers do the reading.
	rc.QPS, rc.Burst = 5, 10
	return rc, nil
}
