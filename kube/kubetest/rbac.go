package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// RBACFile is manifests/kubernetes/base/rbac.yaml, relative to the module root.
const RBACFile = "manifests/kubernetes/base/rbac.yaml"

// RebalanceRole is the ClusterRole bound only when rebalance is on.
const RebalanceRole = "couchwatch-rebalance"

// RepoPath finds rel under the root of the module the test runs in.
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the test directory: cannot find %s", rel)
		}
		dir = parent
	}
}

// ApplyRBAC creates every object of the RBAC manifest at path in namespace ns,
// exactly as written except for names: namespaced objects go to ns, binding
// subjects name ns, and cluster-scoped objects get the suffix "-<ns>" (tests
// share the cluster). With rebalance it also binds the couchwatch-rebalance
// ClusterRole, as an overlay does in production. Everything is deleted after
// the test. It returns the ServiceAccount name.
func (e *Env) ApplyRBAC(t testing.TB, path, ns string, rebalance bool) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read RBAC: %v", err)
	}
	objs, err := decodeAll(raw)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	ctx, cancel := opCtx(t)
	defer cancel()
	suffix := "-" + ns
	sa := ""
	var haveRebalanceRole bool
	for _, o := range objs {
		if err := e.create(ctx, t, o, ns, suffix); err != nil {
			t.Fatalf("apply %s: %v", path, err)
		}
		switch v := o.(type) {
		case *corev1.ServiceAccount:
			sa = v.Name
		case *rbacv1.ClusterRole:
			haveRebalanceRole = haveRebalanceRole || v.Name == RebalanceRole+suffix
		}
	}
	if sa == "" {
		t.Fatalf("%s has no ServiceAccount", path)
	}
	if rebalance {
		if !haveRebalanceRole {
			t.Fatalf("%s has no ClusterRole %s", path, RebalanceRole)
		}
		b := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: RebalanceRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RebalanceRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
		}
		if err := e.create(ctx, t, b, ns, suffix); err != nil {
			t.Fatalf("bind %s: %v", RebalanceRole, err)
		}
	}
	return sa
}

func decodeAll(raw []byte) ([]any, error) {
	dec := utilyaml.NewYAMLReader(bufioReader(raw))
	var out []any
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func (e *Env) create(ctx context.Context, t testing.TB, obj any, ns, suffix string) error {
	t.Helper()
	rb := e.Client.RbacV1()
	cleanup := func(del func(context.Context) error) {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			_ = del(ctx)
		})
	}
	fixSubjects := func(ss []rbacv1.Subject) {
		for i := range ss {
			if ss[i].Kind == rbacv1.ServiceAccountKind {
				ss[i].Namespace = ns
			}
		}
	}
	var err error
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		o.Namespace = ns
		_, err = e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.Role:
		o.Namespace = ns
		_, err = rb.Roles(ns).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.RoleBinding:
		o.Namespace = ns
		fixSubjects(o.Subjects)
		if o.RoleRef.Kind == "ClusterRole" {
			o.RoleRef.Name += suffix
		}
		_, err = rb.RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
	case *rbacv1.ClusterRole:
		o.Name += suffix
		_, err = rb.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		name := o.Name
		cleanup(func(ctx context.Context) error { return rb.ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}) })
	case *rbacv1.ClusterRoleBinding:
		o.Name += suffix
		o.RoleRef.Name += suffix
		fixSubjects(o.Subjects)
		_, err = rb.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		name := o.Name
		cleanup(func(ctx context.Context) error {
			return rb.ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		})
	default:
		return fmt.Errorf("unexpected object %T in RBAC manifest", obj)
	}
	return err
}

// ServiceAccountConfig returns a copy of the admin config that impersonates
// ServiceAccount ns/name, with the groups the API server gives service accounts.
func (e *Env) ServiceAccountConfig(ns, name string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// ServiceAccountClient is a clientset acting as ServiceAccount ns/name.
func (e *Env) ServiceAccountClient(t testing.TB, ns, name string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.ServiceAccountConfig(ns, name))
	if err != nil {
		t.Fatalf("impersonating client: %v", err)
	}
	return cs
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
