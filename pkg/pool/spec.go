package pool

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Spec is one --pool flag: name=NAME,path=DIR.
type Spec struct {
	// Name is how StorageClasses refer to the pool (parameter "pool").
	Name string
	// Path is the pool's root directory; it is created when missing.
	Path string
}

// ParseSpec parses "name=NAME,path=DIR".
func ParseSpec(s string) (Spec, error) {
	var sp Spec
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Spec{}, fmt.Errorf("pool %q: %q is not key=value (want name=NAME,path=DIR)", s, kv)
		}
		switch k {
		case "name":
			sp.Name = v
		case "path":
			sp.Path = v
		default:
			return Spec{}, fmt.Errorf("pool %q: unknown key %q (want name=NAME,path=DIR)", s, k)
		}
	}
	if err := checkName(sp.Name); err != nil {
		return Spec{}, fmt.Errorf("pool %q: name: %w", s, err)
	}
	if !filepath.IsAbs(sp.Path) {
		return Spec{}, fmt.Errorf("pool %q: path %q must be absolute", s, sp.Path)
	}
	sp.Path = filepath.Clean(sp.Path)
	return sp, nil
}

// Specs is a repeatable --pool flag.
type Specs []Spec

// String implements flag.Value.
func (s *Specs) String() string {
	parts := make([]string, 0, len(*s))
	for _, sp := range *s {
		parts = append(parts, "name="+sp.Name+",path="+sp.Path)
	}
	return strings.Join(parts, " ")
}

// Set implements flag.Value.
func (s *Specs) Set(v string) error {
	sp, err := ParseSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, sp)
	return nil
}

// ValidateSpecs refuses duplicate names and pools nested in one another:
// two pools sharing directories would each see the other's volumes as
// orphans, and a delete in one could reach into the other.
func ValidateSpecs(specs []Spec) error {
	for i, a := range specs {
		for _, b := range specs[i+1:] {
			if a.Name == b.Name {
				return fmt.Errorf("pool name %q is given twice", a.Name)
			}
			if nested(a.Path, b.Path) || nested(b.Path, a.Path) {
				return fmt.Errorf("pools %q (%s) and %q (%s) overlap; give each pool its own directory", a.Name, a.Path, b.Name, b.Path)
			}
		}
	}
	return nil
}

func nested(parent, child string) bool {
	rel, err := filepath.Rel(parent, child)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
