//! What a client line means (section 2 of the protocol), parsed in place,
//! and the errors the server answers with.

use std::fmt;

/// An `ERR` reply: the client's line was refused. Its text is the exact
/// reason on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatError {
    /// `/nick` with a name another member holds, ignoring case.
    NickInUse,
    /// `/nick` with a name outside the nick rules.
    InvalidNick,
    /// `/msg` to a nick nobody holds.
    NoSuchNick,
    /// `/msg NICK` with no text.
    EmptyMessage,
    /// A `/` command the server does not know.
    UnknownCommand,
    /// A control character other than TAB, or invalid UTF-8.
    InvalidText,
    /// A line longer than `--max-line`.
    LineTooLong,
    /// The connection is not (or no longer) a member of the room; not sent
    /// in practice, since a session that left reads no more lines.
    NotInRoom,
}

impl ChatError {
    /// The reason as sent after `ERR `.
    pub fn reason(self) -> &'static str {
        match self {
            ChatError::NickInUse => "nick in use",
            ChatError::InvalidNick => "invalid nick",
            ChatError::NoSuchNick => "no such nick",
            ChatError::EmptyMessage => "empty message",
            ChatError::UnknownCommand => "unknown command",
            ChatError::InvalidText => "invalid text",
            ChatError::LineTooLong => "line too long",
            ChatError::NotInRoom => "not in the room",
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChatError {}

/// One client line, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A message to the room (plain text, or the text after `/` of `//`).
    Say(&'a str),
    /// `/nick NAME` (NAME not yet checked).
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/msg NICK TEXT` (TEXT may be empty: refused when run).
    Msg {
        /// The receiver's nick, as typed.
        to: &'a str,
        /// The private text.
        text: &'a str,
    },
    /// `/quit [REASON]`; an empty reason is no reason.
    Quit(Option<&'a str>),
    /// `/help`.
    Help,
}

impl<'a> Command<'a> {
    /// Parses a non-empty line of valid text. Command names are lowercase
    /// and matched exactly; arguments follow one SP. `/who` and `/help`
    /// ignore arguments.
    pub fn parse(line: &'a str) -> Result<Command<'a>, ChatError> {
        if line.starts_with("//") {
            return Ok(Command::Say(&line[1..]));
        }
        let Some(command) = line.strip_prefix('/') else {
            return Ok(Command::Say(line));
        };
        let (name, arg) = match command.split_once(' ') {
            Some((name, arg)) => (name, Some(arg)),
            None => (command, None),
        };
        match name {
            "nick" => Ok(Command::Nick(arg.unwrap_or(""))),
            "who" => Ok(Command::Who),
            "msg" => {
                let arg = arg.unwrap_or("");
                let (to, text) = arg.split_once(' ').unwrap_or((arg, ""));
                Ok(Command::Msg { to, text })
            }
            "quit" => Ok(Command::Quit(arg.filter(|reason| !reason.is_empty()))),
            "help" => Ok(Command::Help),
            _ => Err(ChatError::UnknownCommand),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;

    #[test]
    fn lines_parse_as_the_table_says() {
        let cases: [(&str, Result<Command<'_>, ChatError>); 20] = [
            ("hello world", Ok(Say("hello world"))),
            (" /nick x", Ok(Say(" /nick x"))),
            ("//nick x", Ok(Say("/nick x"))),
            ("//", Ok(Say("/"))),
            ("/nick bob", Ok(Nick("bob"))),
            ("/nick", Ok(Nick(""))),
            ("/nick a b", Ok(Nick("a b"))),
            ("/who", Ok(Who)),
            ("/who cares", Ok(Who)),
            (
                "/msg bob hi there",
                Ok(Msg {
                    to: "bob",
                    text: "hi there",
                }),
            ),
            (
                "/msg bob",
                Ok(Msg {
                    to: "bob",
                    text: "",
                }),
            ),
            ("/msg", Ok(Msg { to: "", text: "" })),
            ("/quit", Ok(Quit(None))),
            ("/quit ", Ok(Quit(None))),
            ("/quit gone fishing", Ok(Quit(Some("gone fishing")))),
            ("/help", Ok(Help)),
            ("/", Err(ChatError::UnknownCommand)),
            ("/NICK bob", Err(ChatError::UnknownCommand)),
            ("/whois", Err(ChatError::UnknownCommand)),
            ("/ nick", Err(ChatError::UnknownCommand)),
        ];
        for (line, expected) in cases {
            assert_eq!(Command::parse(line), expected, "{line:?}");
        }
    }
}
