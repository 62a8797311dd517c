//! Finds the line of a config file where a field is set, so that every
//! error can point the operator at it. The file is parsed a second time
//! with toml_edit, which keeps each key's place in the text.

use toml_edit::{ImDocument, Item, TableLike};

use super::rules::Step;

/// The 1-based line of the deepest part of `field` the file spells out:
/// the key itself when the file sets it, else the table (`[[port]]`) or
/// array element that holds it. None when the file does not parse.
pub fn line_of(text: &str, field: &[Step]) -> Option<usize> {
    let document = ImDocument::parse(text).ok()?;
    let mut table: Option<&dyn TableLike> = Some(document.as_table());
    let mut item: Option<&Item> = None;
    let mut offset: Option<usize> = None;
    for step in field {
        match step {
            Step::Key(key) => {
                let Some((found_key, found)) = table.and_then(|t| t.get_key_value(key)) else {
                    break;
                };
                offset = found_key
                    .span()
                    .or_else(|| found.span())
                    .map(|s| s.start)
                    .or(offset);
                table = found.as_table_like();
                item = Some(found);
            }
            Step::Index(index) => match item {
                Some(Item::ArrayOfTables(tables)) => {
                    let Some(entry) = tables.get(*index) else {
                        break;
                    };
                    offset = entry.span().map(|s| s.start).or(offset);
                    table = Some(entry);
                    item = None;
                }
                Some(Item::Value(toml_edit::Value::Array(array))) => {
                    let Some(value) = array.get(*index) else {
                        break;
                    };
                    offset = value.span().map(|s| s.start).or(offset);
                    table = value.as_inline_table().map(|t| t as &dyn TableLike);
                    item = None;
                }
                _ => break,
            },
        }
    }
    offset.map(|at| text[..at.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[dataplane]\nworkers = [0]\n\n[[port]]\nname = \"a\"\n\n[[port]]\nname = \"b\"\ntrunk = true\nvlans = [\n  { vlan = 5, tenant = \"t\" },\n  { vlan = 0, tenant = \"t\" },\n]\n";

    #[test]
    fn keys_tables_and_array_elements_are_found() {
        use Step::{Index, Key};
        assert_eq!(line_of(FILE, &[Key("dataplane"), Key("workers")]), Some(2));
        assert_eq!(line_of(FILE, &[Key("port"), Index(1)]), Some(7));
        assert_eq!(
            line_of(FILE, &[Key("port"), Index(1), Key("trunk")]),
            Some(9)
        );
        assert_eq!(
            line_of(
                FILE,
                &[Key("port"), Index(1), Key("vlans"), Index(1), Key("vlan")]
            ),
            Some(12)
        );
        // A key the file leaves out: the table that would hold it.
        assert_eq!(
            line_of(FILE, &[Key("port"), Index(0), Key("tenant")]),
            Some(4)
        );
    }
}
