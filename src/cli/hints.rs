//! Known causes of crawler failures, and what an operator can do about each: one
//! table, matched on the stored error text (`errors.message`, `jobs.last_error`),
//! shown wherever a failure is shown (`errors`, `errors show`, `jobs show`, `status`).

/// One known failure: any of `needles` in the error text (case-insensitive) selects
/// `hint`.
struct Known {
    needles: &'static [&'static str],
    hint: &'static str,
}

const KNOWN: &[Known] = &[
    Known {
        // Bun: "undefined is not an object (evaluating 'progress.estimatedTime....')";
        // Node: "Cannot read properties of undefined (reading 'estimatedTimeRemaining')".
        needles: &[
            "progress.estimatedtime",
            "(reading 'estimatedtime",
            "(reading 'estimatedtimeremaining')",
        ],
        hint: "a known crawler bug, not this job: building its progress report reads \
               progress.estimatedTime, which no progress object has, so every job that runs \
               past ~5 s fails (protocol spec §6.1); retrying will not help. Fix the crawler, \
               or keep jobs short",
    },
    Known {
        needles: &["unknown task type"],
        hint: "the crawler cannot run this entity type (only `areas` today); the agent pauses \
               the type (see `crawler-agent status`). Remove the type from \
               dispatch.entity_types in the config, and `crawler-agent jobs resume-type TYPE` \
               once a crawler that supports it is deployed",
    },
];

/// The hint for a failure whose stored text is `text`, if its cause is known.
pub fn for_error(text: &str) -> Option<&'static str> {
    // Only the start of a long text is looked at: the needles sit in the first line.
    let head: String = text.chars().take(4096).collect::<String>().to_lowercase();
    KNOWN
        .iter()
        .find(|k| k.needles.iter().any(|n| head.contains(n)))
        .map(|k| k.hint)
}

#[cfg(test)]
mod tests {
    use super::for_error;

    #[test]
    fn the_progress_type_error_is_known_in_every_runtimes_wording() {
        for text in [
            "undefined is not an object (evaluating 'progress.estimatedTime.estimatedTimeRemaining')",
            "TypeError: Cannot read properties of undefined (reading 'estimatedTimeRemaining')",
            "Cannot read properties of undefined (reading 'estimatedTime')",
            "PROGRESS.ESTIMATEDTIME is undefined",
        ] {
            let hint = for_error(text).unwrap_or_else(|| panic!("no hint for {text}"));
            assert!(hint.contains("§6.1") && hint.contains("5 s"), "{hint}");
        }
    }

    #[test]
    fn an_unknown_task_type_names_the_config_and_the_resume_command() {
        let hint = for_error("Unknown task type: fetch_issues").unwrap();
        assert!(hint.contains("dispatch.entity_types"), "{hint}");
        assert!(hint.contains("jobs resume-type"), "{hint}");
    }

    #[test]
    fn other_failures_have_no_hint() {
        for text in [
            "",
            "GitLab answered 500",
            "estimated time remaining: 3 min",
            "task type unknown",
        ] {
            assert_eq!(for_error(text), None, "{text}");
        }
    }

    #[test]
    fn a_needle_past_the_first_4096_characters_is_not_looked_for() {
        let text = format!("{}Unknown task type: x", "a".repeat(5000));
        assert_eq!(for_error(&text), None);
    }
}
