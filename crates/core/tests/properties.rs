//! Properties of the readers users feed by hand: quantities, YAML files, command
//! interpolation and request paths. Each holds for every input proptest tries (256 cases per
//! property by default; a failing case is shrunk and printed).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use berth_core::Quantity;
use berth_core::interpolate::interpolate;
use berth_core::names::inside_path;
use berth_core::spec::job::JobSpec;
use berth_core::yaml::Source;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_string_is_a_quantity_or_an_error_never_a_panic(s in "\\PC{0,24}") {
        let _ = s.parse::<Quantity>();
    }

    #[test]
    fn quantity_like_strings_never_panic(
        sign in "[-+]?",
        int in "[0-9]{0,30}",
        frac in "(\\.[0-9]{0,12})?",
        suffix in "(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e-?[0-9]{1,12}|E[0-9]{1,12})?",
    ) {
        let _ = format!("{sign}{int}{frac}{suffix}").parse::<Quantity>();
    }

    #[test]
    fn huge_exponents_are_errors_not_panics(exp in prop::sample::select(vec![i32::MAX, i32::MAX - 2, i32::MIN, i32::MIN + 5, 2_000_000_000])) {
        let _ = format!("1e{exp}").parse::<Quantity>();
        let _ = format!("1.5e{exp}").parse::<Quantity>();
    }

    #[test]
    fn a_quantity_reads_back_as_itself(millis in 0i128..=i64::MAX as i128) {
        let q = Quantity::from_millis(millis);
        prop_assert_eq!(q.to_string().parse::<Quantity>().unwrap(), q);
    }

    #[test]
    fn binary_suffixes_scale_by_powers_of_two(n in 0i64..1_000_000) {
        let mi: Quantity = format!("{n}Mi").parse().unwrap();
        prop_assert_eq!(mi.units_ceil(), i128::from(n) << 20);
        let gi: Quantity = format!("{n}Gi").parse().unwrap();
        prop_assert_eq!(gi.units_ceil(), i128::from(n) << 30);
    }

    #[test]
    fn any_text_is_a_job_or_an_error_that_points_into_the_file(text in "\\PC{0,200}") {
        if let Err(e) = JobSpec::parse(&Source::new("job.yml", &text)) {
            if let Some(p) = e.position {
                prop_assert!(p.line >= 1 && p.line as usize <= text.lines().count() + 1, "{p:?}");
            }
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn yaml_shaped_jobs_never_panic(
        keys in prop::collection::vec("(command|code|compute|inputs|outputs|environment|resources|limits|x)", 0..6),
        values in prop::collection::vec("(\"[a-z ]{0,8}\"|[0-9]{1,3}|\\{\\}|\\[\\]|null|\\n  [a-z]{1,4}: [a-z0-9]{0,4})", 0..6),
    ) {
        let text: String = keys
            .iter()
            .zip(values.iter().chain(std::iter::repeat(&String::new())))
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect();
        let _ = JobSpec::parse(&Source::new("job.yml", &text));
    }

    #[test]
    fn interpolation_puts_each_known_value_in_its_place(
        before in "[a-z ]{0,10}",
        name in "[a-z_]{1,8}",
        value in "[a-zA-Z0-9/._ -]{0,20}",
        after in "[a-z ]{0,10}",
    ) {
        let inputs = BTreeMap::from([(name.clone(), value.clone())]);
        let command = format!("{before}${{{{inputs.{name}}}}}{after}");
        prop_assert_eq!(
            interpolate(&command, &inputs, &BTreeMap::new()).unwrap(),
            format!("{before}{value}{after}")
        );
    }

    #[test]
    fn interpolation_of_any_text_never_panics(command in "(\\PC|\\$\\{\\{|\\}\\}){0,40}") {
        let _ = interpolate(&command, &BTreeMap::new(), &BTreeMap::new());
    }

    #[test]
    fn an_accepted_path_stays_below_where_it_is_joined(path in "(\\.\\.|\\.|/|[a-z]{1,3}|\\x00){0,8}") {
        if let Some(p) = inside_path(&path) {
            let joined = std::path::Path::new("/root/dir").join(p);
            prop_assert!(joined.starts_with("/root/dir/"), "{}", joined.display());
            prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
            prop_assert!(!path.contains('\0'));
        }
    }
}
