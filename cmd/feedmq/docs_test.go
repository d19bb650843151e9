package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// configKeys returns the dotted YAML keys of every setting in t, e.g.
// "limits.max_devices"; a struct of settings is a section, not a key.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// The README's configuration reference and configs/feedmq.yaml cover every
// key serve accepts.
func TestConfigReferenceComplete(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	ref, _, _ = strings.Cut(ref, "\n## ")
	yamlFile, err := os.ReadFile("../../configs/feedmq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := configKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 10 {
		t.Fatalf("found only %v", keys)
	}
	for _, key := range keys {
		if !strings.Contains(ref, "`"+key+"`") {
			t.Errorf("README's configuration table lacks `%s`", key)
		}
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(yamlFile), "\n"+leaf+":") && !strings.Contains(string(yamlFile), " "+leaf+":") {
			t.Errorf("configs/feedmq.yaml lacks %s", key)
		}
	}
}
