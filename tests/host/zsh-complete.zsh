#!/usr/bin/zsh -f
# zsh-complete.zsh COMPLETIONS_DIR OUT_DIR LINE...: for each LINE, "== LINE"
# and then the words zsh's completion offers at its end, sorted, on one
# line ("(none)" if none). It drives an interactive zsh -f in a pseudo-terminal (zpty) with
# the completion of COMPLETIONS_DIR loaded, types LINE and a Tab, and
# records what the completion functions hand to compadd. After the Tab
# it types a key bound to a widget that writes a marker: keys are read in
# order, so the marker means the completion is over (waited for with a
# deadline, not a sleep).
zmodload zsh/zpty
comp_dir=$1 out=$2
shift 2
zpty z zsh -f -i || exit 1
zpty -w z "PS1='%% '; fpath=(${(q)comp_dir} \$fpath); autoload -Uz compinit; compinit -u -d ${(q)out}/zcompdump"
zpty -w z "PATH=${(q)PATH}; zstyle ':completion:*' menu no; LISTMAX=100000; setopt nolistbeep"
zpty -w z "compadd() { local -a r; builtin compadd -O r \"\$@\"; print -rl -- \$r >>${(q)out}/words; builtin compadd \"\$@\" }"
zpty -w z "marker() { print done >${(q)out}/marker }; zle -N marker; bindkey '^Xm' marker"
for line in "$@"; do
  rm -f $out/words $out/marker
  zpty -w -n z "$line"$'\t\C-xm'
  for (( i = 0; i < 300; i++ )); do
    [[ -e $out/marker ]] && break
    sleep 0.1
  done
  [[ -e $out/marker ]] || { print -u2 "zsh-complete: no answer in 30 s to: $line"; exit 1 }
  zpty -w -n z $'\C-u'
  print -r -- "== $line"
  found=${(j: :)${(ou)${(f)"$(cat $out/words 2>/dev/null)"}}}
  [[ -n $found ]] || found='(none)'
  print -r -- "$found"
done
zpty -d z
