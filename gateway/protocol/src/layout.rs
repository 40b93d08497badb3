//! The table macro behind [`crate::client`] and [`crate::server`]: one line per message, from
//! which the type numbers, body lengths, encoding and decoding come (docs/architecture.md, "One
//! vocabulary"). The field vocabulary and the little-endian reader and writer are the engine's
//! (`ringbook_engine::le`), shared with the journal codec.

/// Declares the wire layout of every message of `$msg` that a table can say.
///
/// Each line is `TYPE: (shape) [layout];`: `TYPE` a constant in the calling module's
/// `msg_type`, the shape the variant written once with its field names (the same tokens are the
/// `match` pattern that encodes and the expression that builds the decoded value), the layout
/// the body's fields in byte order (`name: Type`, `[pad N]`, `[skip N]`; see
/// `ringbook_engine::le`). An optional first line `[by hand: PATTERN => TYPE, …];` names the
/// messages written by hand beside the table, with the type number of each.
///
/// Generates `table_body_len(type)`, `$msg::table_msg_type`, `$msg::put_table` and
/// `get_table(type, reader)` in the calling module, and a compile-time check that every body
/// fits `BODY_BYTES_MAX`.
macro_rules! wire_layouts {
    (
        $msg:ident;
        $([by hand: $($hand:pat => $hand_ty:expr),+ $(,)?];)?
        $( $ty:ident: ($($shape:tt)+) [$($layout:tt)*]; )*
    ) => {
        $(
            #[allow(unused_comparisons)]
            const _: () = assert!(ringbook_engine::le_size!($($layout)*) <= BODY_BYTES_MAX);
        )*

        /// The body length of message type `ty`, if the table has it.
        #[allow(dead_code)]
        fn table_body_len(ty: u16) -> Option<usize> {
            match ty {
                $(msg_type::$ty => Some(ringbook_engine::le_size!($($layout)*)),)*
                _ => None,
            }
        }

        impl $msg {
            /// The message type number.
            #[allow(unused_variables)]
            fn table_msg_type(&self) -> u16 {
                match *self {
                    $($($shape)+ => msg_type::$ty,)*
                    $($($hand => $hand_ty,)+)?
                }
            }

            /// Writes the body of a message in the table (nothing for one written by hand).
            #[allow(unused_variables)]
            fn put_table(&self, w: &mut LeWriter<'_>) {
                match *self {
                    $($($shape)+ => {
                        ringbook_engine::le_put!(w; $($layout)*);
                    })*
                    $($($hand => {})+)?
                }
            }
        }

        /// Reads a body of type `ty` (`UNKNOWN_MESSAGE_TYPE` if the table does not have it).
        fn get_table(ty: u16, r: &mut LeReader<'_>) -> Result<$msg, RejectCode> {
            Ok(match ty {
                $(msg_type::$ty => {
                    ringbook_engine::le_get!(r; $($layout)*);
                    $($shape)+
                })*
                _ => return Err(RejectCode::UnknownMessageType),
            })
        }
    };
}
