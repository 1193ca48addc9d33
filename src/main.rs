fn main() -> anyhow::Result<()> {
    hissaback::cli::main()
}
