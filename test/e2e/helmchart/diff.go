package helmchart

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Key identifies an object as the API server does.
type Key struct {
	APIVersion, Kind, Namespace, Name string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return fmt.Sprintf("%s %s %s", k.APIVersion, k.Kind, k.Name)
	}
	return fmt.Sprintf("%s %s %s/%s", k.APIVersion, k.Kind, k.Namespace, k.Name)
}

// KeyOf returns o's key. An object of a cluster-scoped kind has no
// namespace, whatever its metadata says: the API server drops it.
func KeyOf(o *unstructured.Unstructured) Key {
	ns := o.GetNamespace()
	if clusterScoped[o.GetKind()] {
		ns = ""
	}
	return Key{o.GetAPIVersion(), o.GetKind(), ns, o.GetName()}
}

// clusterScoped are the cluster-scoped kinds among dirvol's objects.
// kustomize sets its namespace: on every object whose kind its built-in
// schema does not know to be cluster-scoped (VolumeAttributesClass), and the
// API server ignores it there; Diff does too.
var clusterScoped = map[string]bool{
	"Namespace": true, "CSIDriver": true, "StorageClass": true, "VolumeAttributesClass": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
	"VolumeSnapshotClass": true,
}

// Diff compares two renders of the same objects and returns one line per
// difference, naming the object and the field path: objects only in one of
// them, then fields that differ. Values are compared as JSON (so the YAML
// spelling of a number or string does not matter); the order of list items
// does, as it does for a container's args.
func Diff(want, got []*unstructured.Unstructured) ([]string, error) {
	wantBy, err := byKey(want)
	if err != nil {
		return nil, err
	}
	gotBy, err := byKey(got)
	if err != nil {
		return nil, err
	}
	var keys []Key
	for k := range wantBy {
		keys = append(keys, k)
	}
	for k := range gotBy {
		if _, ok := wantBy[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	var out []string
	for _, k := range keys {
		w, inWant := wantBy[k]
		g, inGot := gotBy[k]
		switch {
		case !inGot:
			out = append(out, fmt.Sprintf("%s: missing (only in the first render)", k))
		case !inWant:
			out = append(out, fmt.Sprintf("%s: extra (only in the second render)", k))
		default:
			for _, d := range diffValues("", w, g) {
				out = append(out, fmt.Sprintf("%s: %s", k, d))
			}
		}
	}
	return out, nil
}

// byKey indexes objects by key, each normalised through JSON.
func byKey(objs []*unstructured.Unstructured) (map[Key]any, error) {
	out := map[Key]any{}
	for _, o := range objs {
		k := KeyOf(o)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s appears twice in one render", k)
		}
		b, err := json.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		if md, ok := v["metadata"].(map[string]any); ok && k.Namespace == "" {
			delete(md, "namespace")
		}
		out[k] = v
	}
	return out, nil
}

func diffValues(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var keys []string
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			p := fieldPath(path, k)
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inG:
				out = append(out, fmt.Sprintf("%s: missing, want %s", p, show(wv)))
			case !inW:
				out = append(out, fmt.Sprintf("%s: unexpected %s", p, show(gv)))
			default:
				out = append(out, diffValues(p, wv, gv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		var out []string
		for i := 0; i < max(len(w), len(g)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(g):
				out = append(out, fmt.Sprintf("%s: missing, want %s", p, show(w[i])))
			case i >= len(w):
				out = append(out, fmt.Sprintf("%s: unexpected %s", p, show(g[i])))
			default:
				out = append(out, diffValues(p, w[i], g[i])...)
			}
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return []string{fmt.Sprintf("%s: want %s, got %s", orRoot(path), show(want), show(got))}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fieldPath appends key to path: .key, or ["key"] for keys such as label
// names that are not identifiers.
func fieldPath(path, key string) string {
	if identifier.MatchString(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

func orRoot(path string) string {
	if path == "" {
		return "(object)"
	}
	return path
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
