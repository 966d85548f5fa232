zmodload zsh/zpty || exit 3
dir=$1; shift
zpty z zsh -f -i
zpty -w z "PROMPT=''; fpath=($dir \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "compadd() { local -a __c; builtin compadd -O __c \"\$@\"; print -l -- \"<c>\"\${^__c}; builtin compadd \"\$@\" }"
zpty -w z "bindkey '^I' complete-word; print READY"
while zpty -r z line; do [[ $line == READY* ]] && break; done
zpty -w -n z "$*"$'\t'
sleep 1
out=""
while zpty -r -t z line; do out+="$line"; done
print -r -- "$out" | tr '\r' '\n' | grep -a -o '<c>[^<[:cntrl:]]*' | sed 's/^<c>//' | sort -u
