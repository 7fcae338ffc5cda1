// Package suitecheck checks what test/e2e/conformance gives the Kubernetes
// external storage suite against the pinned release: the test driver files
// (testdriver-*.yaml) against its loader, which ignores keys it does not
// know, so that a misspelled capability or field cannot silently turn specs
// off; and the names of the images the harness makes against its image
// manifest.
package suitecheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"k8s.io/kubernetes/test/e2e/storage/external"
	storageframework "k8s.io/kubernetes/test/e2e/storage/framework"
)

// conformanceDir holds the driver files, relative to this package.
const conformanceDir = "../../../conformance"

// upstream is what the pinned release's loader accepts.
type upstream struct {
	// definition is a struct type with the fields of external's
	// driverDefinition, built from its source, DriverInfo being the real
	// storageframework.DriverInfo.
	definition reflect.Type
	// capabilities are the values of the Capability constants.
	capabilities map[string]bool
}

func TestDriverFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(conformanceDir, "testdriver-*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test driver files in %s (err %v)", conformanceDir, err)
	}
	up := loadUpstream(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := up.check(data); err != nil {
				t.Fatal(err)
			}
			// And the loader itself takes it (it also registers the
			// specs, which this test never runs).
			if err := external.AddDriverDefinition(f); err != nil {
				t.Fatalf("upstream loader: %v", err)
			}
		})
	}
}

// TestCheckRefusesMisspellings keeps the check honest: each document has
// one key the upstream loader would silently drop.
func TestCheckRefusesMisspellings(t *testing.T) {
	up := loadUpstream(t)
	base := "DriverInfo:\n  Name: dirvol.csi.dev\n  SupportedSizeRange:\n    Min: 1Mi\n"
	if err := up.check([]byte(base + "  Capabilities:\n    persistence: true\n")); err != nil {
		t.Fatalf("a valid document is refused: %v", err)
	}
	for name, doc := range map[string]string{
		"capability":         base + "  Capabilities:\n    snapshotDatasource: true\n",
		"DriverInfo field":   base + "  TopologyKey: [topology.dirvol.csi.dev/node]\n",
		"top-level field":    base + "VolumeAttributeClass:\n  FromFile: x.yaml\n",
		"nested field":       base + "StorageClass:\n  FromExistingClass: dirvol\n",
		"case":               base + "snapshotClass:\n  FromName: true\n",
		"no minimum size":    "DriverInfo:\n  Name: dirvol.csi.dev\n",
		"no name":            "DriverInfo:\n  SupportedSizeRange:\n    Min: 1Mi\n",
		"capability not set": base + "  Capabilities:\n    block:\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := up.check([]byte(doc)); err == nil {
				t.Errorf("accepted:\n%s", doc)
			}
		})
	}
}

// check decodes a driver file strictly (exact, case-sensitive keys, none
// unknown) into the upstream fields and checks its capability names.
func (u upstream) check(data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	v := reflect.New(u.definition)
	strict, err := sigsjson.UnmarshalStrict(js, v.Interface())
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return fmt.Errorf("keys the upstream loader ignores: %v", strict)
	}
	info := v.Elem().FieldByName("DriverInfo").Interface().(storageframework.DriverInfo)
	if info.Name == "" {
		return fmt.Errorf("DriverInfo.Name is not set")
	}
	if info.SupportedSizeRange.Min == "" {
		return fmt.Errorf("DriverInfo.SupportedSizeRange.Min is not set (the loader's default is 5Gi)")
	}
	// Capabilities must be explicit booleans: `block:` alone decodes as
	// false, which is not what its author meant.
	var raw struct {
		DriverInfo struct{ Capabilities map[string]*bool }
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &raw); err != nil {
		return err
	}
	var unknown []string
	for name, set := range raw.DriverInfo.Capabilities {
		if !u.capabilities[name] {
			unknown = append(unknown, name)
		} else if set == nil {
			return fmt.Errorf("capability %s has no value", name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("capabilities the pinned release does not know: %s", strings.Join(unknown, ", "))
	}
	return nil
}

// loadUpstream reads external.go and testdriver.go of the pinned release
// from the module cache.
func loadUpstream(t *testing.T) upstream {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/kubernetes: %v", err)
	}
	root := strings.TrimSpace(string(out))
	fset := token.NewFileSet()
	ext, err := parser.ParseFile(fset, filepath.Join(root, "test/e2e/storage/external/external.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	def := findStruct(ext, "driverDefinition")
	if def == nil {
		t.Fatal("no driverDefinition struct in external.go")
	}
	typ, err := structType(def)
	if err != nil {
		t.Fatalf("driverDefinition: %v", err)
	}
	td, err := parser.ParseFile(fset, filepath.Join(root, "test/e2e/storage/framework/testdriver.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]bool{}
	ast.Inspect(td, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Capability" {
			return true
		}
		for _, v := range vs.Values {
			if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				caps[s] = true
			}
		}
		return true
	})
	if len(caps) < 10 {
		t.Fatalf("found only %d Capability constants in testdriver.go", len(caps))
	}
	return upstream{definition: typ, capabilities: caps}
}

func findStruct(f *ast.File, name string) *ast.StructType {
	var st *ast.StructType
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == name {
			st, _ = ts.Type.(*ast.StructType)
			return false
		}
		return st == nil
	})
	return st
}

// structType turns a struct's source into a reflect type with the same
// field names, so that strict decoding knows exactly upstream's keys.
func structType(st *ast.StructType) (reflect.Type, error) {
	var fields []reflect.StructField
	for _, f := range st.Fields.List {
		ft, err := fieldType(f.Type)
		if err != nil {
			return nil, err
		}
		for _, n := range f.Names {
			fields = append(fields, reflect.StructField{Name: n.Name, Type: ft})
		}
	}
	return reflect.StructOf(fields), nil
}

func fieldType(e ast.Expr) (reflect.Type, error) {
	switch x := e.(type) {
	case *ast.Ident:
		switch x.Name {
		case "bool":
			return reflect.TypeOf(false), nil
		case "string":
			return reflect.TypeOf(""), nil
		}
	case *ast.SelectorExpr:
		if x.Sel.Name == "DriverInfo" {
			return reflect.TypeOf(storageframework.DriverInfo{}), nil
		}
	case *ast.StructType:
		return structType(x)
	case *ast.ArrayType:
		elem, err := fieldType(x.Elt)
		if err != nil {
			return nil, err
		}
		return reflect.SliceOf(elem), nil
	case *ast.MapType:
		k, err := fieldType(x.Key)
		if err != nil {
			return nil, err
		}
		v, err := fieldType(x.Value)
		if err != nil {
			return nil, err
		}
		return reflect.MapOf(k, v), nil
	}
	return nil, fmt.Errorf("field type %T %v not handled", e, e)
}
