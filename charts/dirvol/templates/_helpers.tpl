{{/*
The labels every object carries, as deploy/base's kustomization gives them.
*/}}
{{- define "dirvol.labels" -}}
app.kubernetes.io/part-of: dirvol
{{- end }}

{{/*
The node plugin's pod labels (also the DaemonSet's selector).
*/}}
{{- define "dirvol.nodeLabels" -}}
app.kubernetes.io/name: dirvol
app.kubernetes.io/component: node
{{- end }}

{{/*
The driver's image reference.
*/}}
{{- define "dirvol.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The --pool flag of one pool (values.schema.json has checked its fields).
*/}}
{{- define "dirvol.poolArg" -}}
--pool=name={{ .name }}
{{- if .image }},image={{ .image }},size={{ .size }}{{ if .path }},path={{ .path }}{{ end }}
{{- else }},path={{ .path }}{{ if .backend }},backend={{ .backend }}{{ end }}
{{- end }}
{{- end }}

{{/*
dirvol.outsideDataDir returns "true" when the path in .path is not the data
dir or inside it: such a path needs a hostPath volume of its own.
*/}}
{{- define "dirvol.outsideDataDir" -}}
{{- $dataDir := trimSuffix "/" .dataDir -}}
{{- $p := clean .path -}}
{{- if not (or (eq $p $dataDir) (hasPrefix (printf "%s/" $dataDir) $p)) }}true{{ end -}}
{{- end }}

{{/*
dirvol.poolHostPaths returns, as a JSON list of {volume, path}, the
directories of pools that lie outside the data dir: a directory pool's path,
an image pool's mount point and the directory holding its image.
*/}}
{{- define "dirvol.poolHostPaths" -}}
{{- $dataDir := .Values.driver.dataDir -}}
{{- $out := list -}}
{{- range $pool := .Values.pools -}}
{{- $dirs := list -}}
{{- if $pool.image -}}
{{- $dirs = append $dirs (dict "suffix" "image" "path" (dir $pool.image)) -}}
{{- if $pool.path }}{{ $dirs = append $dirs (dict "suffix" "mount" "path" $pool.path) }}{{ end -}}
{{- else -}}
{{- $dirs = append $dirs (dict "suffix" "path" "path" $pool.path) -}}
{{- end -}}
{{- range $d := $dirs -}}
{{- if include "dirvol.outsideDataDir" (dict "dataDir" $dataDir "path" $d.path) -}}
{{- $out = append $out (dict "volume" (printf "pool-%s-%s" $pool.name $d.suffix) "path" (clean $d.path)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/*
dirvol.validate fails the render on what values.schema.json cannot say: names
given twice, a class naming a pool that does not exist, a default class that
is not among the classes.
*/}}
{{- define "dirvol.validate" -}}
{{- $pools := dict "default" true -}}
{{- $seen := dict -}}
{{- range .Values.pools -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "pools: pool %q is given twice; give each pool its own name" .name) -}}
{{- end -}}
{{- if and .image .backend -}}
{{- fail (printf "pools: pool %q is an image pool, which the driver always formats btrfs; drop backend: %s" .name .backend) -}}
{{- end -}}
{{- if and .size (not .image) -}}
{{- fail (printf "pools: pool %q has a size but no image; size applies only to image pools: give image (a file for the driver to make) or drop size" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- $_ := set $pools .name true -}}
{{- end -}}
{{- $classes := dict -}}
{{- range .Values.storageClasses -}}
{{- if hasKey $classes .name -}}
{{- fail (printf "storageClasses: class %q is given twice; give each class its own name" .name) -}}
{{- end -}}
{{- $_ := set $classes .name true -}}
{{- $pool := (.parameters | default dict).pool -}}
{{- if and $pool (not (hasKey $pools (toString $pool))) -}}
{{- fail (printf "storageClasses: class %q names pool %q, which is neither \"default\" nor in pools (%s); add the pool to pools or fix the name" .name $pool (keys $pools | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- with .Values.defaultStorageClass -}}
{{- if not (hasKey $classes .) -}}
{{- fail (printf "defaultStorageClass: %q is not among storageClasses (%s); name one of them, or \"\" for none" . (keys $classes | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- $vacs := dict -}}
{{- range .Values.volumeAttributesClasses -}}
{{- if hasKey $vacs .name -}}
{{- fail (printf "volumeAttributesClasses: class %q is given twice; give each class its own name" .name) -}}
{{- end -}}
{{- $_ := set $vacs .name true -}}
{{- end -}}
{{- end }}
{{/*
dirvol.parameters renders a parameters map as strings. Whole numbers (uid,
gid) come from YAML as floats: printed without exponent or decimals.
*/}}
{{- define "dirvol.parameters" -}}
{{- range $k, $v := . }}
{{ $k }}: {{ if kindIs "float64" $v }}{{ printf "%.0f" $v | quote }}{{ else }}{{ $v | toString | quote }}{{ end }}
{{- end }}
{{- end }}
