//! Headless machines: is there a sound card at all, and keeping alsa-lib quiet when there is
//! none. Without a card, every device probe makes alsa-lib print lines such as
//! `ALSA lib confmisc.c:855:(parse_card) cannot find card '0'` to stderr; an application
//! that already knows (and says once) that there is no sound card can silence them.

/// True when the machine has a sound card (Linux: `/proc/asound/cards` lists one); always
/// true elsewhere, where the audio backends do not print such noise.
pub fn sound_card_present() -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string("/proc/asound/cards") {
            Ok(cards) => !cards.trim().is_empty() && !cards.contains("no soundcards"),
            Err(_) => std::path::Path::new("/dev/snd").exists(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Replaces alsa-lib's global error handler (which prints to stderr) with one that drops
/// the messages. Errors still reach callers as return codes, so cpal still reports a
/// missing device as an error. No-op outside Linux.
pub fn silence_alsa_errors() {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_char, c_int};

        unsafe extern "C" fn ignore(
            _file: *const c_char,
            _line: c_int,
            _function: *const c_char,
            _err: c_int,
            _fmt: *const c_char,
        ) {
        }

        // SAFETY: alsa-lib calls the handler as a C variadic function. A callee that reads
        // none of the variadic arguments is ABI-compatible with that call on the
        // platforms alsa runs on (System V x86-64 and AAPCS64 pass the fixed arguments the
        // same way either way), and stable Rust cannot define a variadic function itself.
        unsafe {
            let handler: alsa_sys::snd_lib_error_handler_t = Some(std::mem::transmute::<
                unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char),
                unsafe extern "C" fn(
                    *const c_char,
                    c_int,
                    *const c_char,
                    c_int,
                    *const c_char,
                    ...
                ),
            >(ignore));
            alsa_sys::snd_lib_error_set_handler(handler);
        }
    }
}
